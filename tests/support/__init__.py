"""Test support shared by the pytest fixtures and the bench/ scripts.

Nothing here imports pytest, so ``bench/`` scripts can use it too::

    from tests.support.sshd import SshdServer

    with SshdServer() as pod:
        ...  # pod.connect_kwargs() for asyncssh, pod.ssh_argv() for OpenSSH

(``bench/`` scripts put the repository root on ``sys.path`` first.)
"""
