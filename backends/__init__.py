"""How gpuctl reaches things: SSH transport, the remote agent, GPU readers, the local machine."""

import warnings

# asyncssh (2.24) still names DSA types at import time, and cryptography (>= 48) warns
# about each of them: ten lines of CryptographyDeprecationWarning before every command's
# output, in cron mail and in the demo. gpuctl never offers DSA, so the warning says
# nothing to a user. Every backends module that imports asyncssh is imported after this
# package, so one filter here covers them all; matched by message and module so that no
# other warning is hidden.
warnings.filterwarnings("ignore", message=r"DSA is deprecated", module=r"asyncssh(\.|$)")
