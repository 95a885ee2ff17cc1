"""AWS, GCP, Azure, SkyPilot and dstack through fake CLIs on PATH that record their argv."""

from __future__ import annotations

import pytest

from backends.providers import registry
from backends.providers.base import (
    InstanceNotFound,
    InstanceState,
    ProviderError,
    ProviderSettings,
    ProviderUnavailable,
    Unsupported,
)
from backends.providers.skypilot import parse_sky_status
from tests.support.fake_cli import FakeCli


@pytest.fixture
def cli(tmp_path, monkeypatch):
    fake = FakeCli(tmp_path)
    for name in ("aws", "gcloud", "az", "sky", "dstack"):
        fake.install(name)
    monkeypatch.setenv("PATH", fake.path_env())
    return fake


def build(kind: str, api_url: str | None = None, **options):
    return registry.build(kind, ProviderSettings(api_url=api_url, options=options))


# --- AWS ------------------------------------------------------------------------------

def ec2(state: str = "running", **extra) -> dict:
    inst = {"InstanceId": "i-0abc", "InstanceType": "p4d.24xlarge", "State": {"Code": 16, "Name": state},
            "PublicIpAddress": "203.0.113.5", "LaunchTime": "2026-05-01T10:00:00+00:00",
            "Tags": [{"Key": "Name", "Value": "train"}], **extra}
    return {"Reservations": [{"Instances": [inst]}]}


async def test_aws_get_stop_terminate_argv(cli):
    cli.answer("aws", ["describe-instances"], stdout=ec2())
    aws = build("aws", "http://127.0.0.1:4566", region="eu-west-1", profile="work")
    info = await aws.get("i-0abc")
    await aws.stop("i-0abc")
    await aws.terminate("i-0abc")
    tail = ["--output", "json", "--region", "eu-west-1", "--profile", "work", "--endpoint-url", "http://127.0.0.1:4566"]
    assert cli.argvs("aws") == [
        ["ec2", "describe-instances", "--instance-ids", "i-0abc", *tail],
        ["ec2", "stop-instances", "--instance-ids", "i-0abc", *tail],
        ["ec2", "terminate-instances", "--instance-ids", "i-0abc", *tail],
    ]
    assert (info.id, info.name, info.state, info.ssh_host, info.ssh_port) == ("i-0abc", "train", "running", "203.0.113.5", 22)
    assert info.started_at is not None and info.preempted is False


async def test_aws_spot_interruption_is_preempted(cli):
    cli.answer("aws", ["describe-instances"], stdout=ec2(
        "terminated", InstanceLifecycle="spot",
        StateReason={"Code": "Server.SpotInstanceTermination", "Message": "Spot instance termination"}))
    info = await build("aws").get("i-0abc")
    assert (info.state, info.preempted, info.interruptible) == (InstanceState.TERMINATED, True, True)


async def test_aws_not_found_keeps_the_aws_code(cli):
    cli.answer("aws", ["terminate-instances"], code=254, stderr=(
        "\nAn error occurred (InvalidInstanceID.NotFound) when calling the TerminateInstances operation: "
        "The instance ID 'i-0abc' does not exist\n"))
    with pytest.raises(InstanceNotFound) as err:
        await build("aws").terminate("i-0abc")
    assert err.value.code == "InvalidInstanceID.NotFound"
    assert "does not exist" in err.value.message


async def test_aws_other_failures_are_provider_errors(cli):
    cli.answer("aws", ["stop-instances"], code=254, stderr=(
        "An error occurred (UnauthorizedOperation) when calling the StopInstances operation: denied"))
    with pytest.raises(ProviderError) as err:
        await build("aws").stop("i-0abc")
    assert not isinstance(err.value, InstanceNotFound)
    assert err.value.code == "UnauthorizedOperation"


# --- GCP ------------------------------------------------------------------------------

def gce(status: str = "RUNNING", spot: bool = False) -> dict:
    return {"id": "123", "name": "trainer", "status": status,
            "machineType": "https://www.googleapis.com/compute/v1/projects/p/zones/z/machineTypes/a2-highgpu-1g",
            "scheduling": {"provisioningModel": "SPOT" if spot else "STANDARD"},
            "networkInterfaces": [{"accessConfigs": [{"natIP": "34.1.2.3"}]}],
            "lastStartTimestamp": "2026-05-01T10:00:00.123-07:00"}


async def test_gcloud_get_stop_delete_argv(cli):
    cli.answer("gcloud", ["describe"], stdout=gce())
    gcp = build("gcp", zone="us-central1-a", project="proj")
    info = await gcp.get("trainer")
    await gcp.stop("trainer")
    await gcp.terminate("trainer")
    tail = ["--format=json", "--project", "proj"]
    assert cli.argvs("gcloud") == [
        ["compute", "instances", "describe", "trainer", "--zone", "us-central1-a", *tail],
        ["compute", "instances", "stop", "trainer", "--zone", "us-central1-a", "--quiet", *tail],
        ["compute", "instances", "delete", "trainer", "--zone", "us-central1-a", "--quiet", *tail],
    ]
    assert (info.id, info.state, info.ssh_host, info.gpu_name) == ("trainer", "running", "34.1.2.3", "a2-highgpu-1g")


async def test_gcloud_preempted_operation_marks_a_stopped_spot_vm(cli):
    cli.answer("gcloud", ["describe"], stdout=gce("TERMINATED", spot=True))
    cli.answer("gcloud", ["operations"], stdout=[{"name": "op-1", "operationType": "compute.instances.preempted"}])
    info = await build("gcp", zone="z").get("trainer")
    assert (info.state, info.preempted) == (InstanceState.STOPPED, True)
    ops = cli.argvs("gcloud")[1]
    assert ops[:3] == ["compute", "operations", "list"]
    assert "--filter=operationType=compute.instances.preempted AND targetLink~/instances/trainer$" in ops


async def test_gcloud_not_found(cli):
    cli.answer("gcloud", ["delete"], code=1, stderr=(
        "ERROR: (gcloud.compute.instances.delete) Could not fetch resource:\n"
        " - The resource 'projects/p/zones/z/instances/trainer' was not found\n"))
    with pytest.raises(InstanceNotFound):
        await build("gcp").terminate("trainer")


# --- Azure ----------------------------------------------------------------------------

async def test_azure_stop_deallocates_and_delete_says_yes(cli):
    cli.answer("az", ["show"], stdout={"name": "vm1", "id": "/subscriptions/s/resourceGroups/rg/providers/x/vm1",
                                       "powerState": "VM running", "publicIps": "20.1.2.3",
                                       "osProfile": {"adminUsername": "azureuser"},
                                       "hardwareProfile": {"vmSize": "Standard_NC24ads_A100_v4"}})
    az = build("azure", resource_group="rg", subscription="sub-1")
    info = await az.get("vm1")
    await az.stop("vm1")
    await az.terminate("vm1")
    target = ["--resource-group", "rg", "--name", "vm1"]
    tail = ["--output", "json", "--subscription", "sub-1"]
    assert cli.argvs("az") == [
        ["vm", "show", "--show-details", *target, *tail],
        ["vm", "deallocate", *target, *tail],
        ["vm", "delete", *target, "--yes", *tail],
    ]
    assert (info.id, info.state, info.ssh_host, info.ssh_user) == ("vm1", "running", "20.1.2.3", "azureuser")


async def test_azure_powered_off_is_noted_as_still_billing_and_ids_work(cli):
    cli.answer("az", ["show"], stdout={"name": "vm1", "powerState": "VM stopped"})
    rid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    info = await build("azure").get(rid)
    assert cli.argvs("az")[0][:4] == ["vm", "show", "--show-details", "--ids"]
    assert info.state == InstanceState.STOPPED and "still allocated" in info.note


async def test_azure_needs_a_resource_group_for_a_bare_name(cli):
    with pytest.raises(ProviderError) as err:
        await build("azure").stop("vm1")
    assert "resource_group" in str(err.value)
    assert cli.argvs("az") == []


async def test_azure_not_found_keeps_the_arm_code(cli):
    cli.answer("az", ["delete"], code=3, stderr="(ResourceNotFound) The Resource 'vm1' was not found.\nCode: ResourceNotFound\n")
    with pytest.raises(InstanceNotFound) as err:
        await build("azure", resource_group="rg").terminate("vm1")
    assert err.value.code == "ResourceNotFound"


# --- SkyPilot -------------------------------------------------------------------------

SKY_STATUS = """\
Clusters
NAME        INFRA          RESOURCES                   STATUS   AUTOSTOP  LAUNCHED
mycluster   AWS (us-e-1)   1x(gpus=A100:1, p4d...)     UP       -         1 hr ago
old         GCP (us-c1)    1x(gpus=L4:1, g2-...)       STOPPED  -         2 days ago

Managed jobs
No in-progress managed jobs.
"""


def test_sky_status_table_is_parsed():
    assert parse_sky_status(SKY_STATUS) == {"mycluster": "UP", "old": "STOPPED"}


async def test_sky_get_stop_down(cli):
    cli.answer("sky", ["status"], stdout=SKY_STATUS)
    sky = build("skypilot")
    assert (await sky.get("mycluster")).state == InstanceState.RUNNING
    with pytest.raises(InstanceNotFound):
        await sky.get("gone")
    await sky.stop("mycluster")
    await sky.terminate("mycluster")
    assert cli.argvs("sky") == [["status", "mycluster"], ["status", "gone"],
                                ["stop", "-y", "mycluster"], ["down", "-y", "mycluster"]]


async def test_sky_down_of_an_unknown_cluster_is_already_gone(cli):
    cli.answer("sky", ["down"], stdout="Cluster(s) not found (tip: see `sky status`).\n")
    with pytest.raises(InstanceNotFound):
        await build("skypilot").terminate("gone")


# --- dstack ---------------------------------------------------------------------------

async def test_dstack_ps_json_and_stop(cli):
    cli.answer("dstack", ["ps"], stdout={"project": "main", "runs": [
        {"run_spec": {"run_name": "train-llm"}, "status": "running", "submitted_at": "2026-05-01T10:00:00Z",
         "jobs": [{"job_submissions": [{"job_provisioning_data": {"price": 1.99}}]}]},
        {"run_spec": {"run_name": "spot-run"}, "status": "failed",
         "jobs": [{"job_submissions": [{"termination_reason": "interrupted_by_no_capacity"}]}]},
    ]})
    ds = build("dstack", project="main")
    info = await ds.get("train-llm")
    spot = await ds.get("spot-run")
    with pytest.raises(Unsupported):
        await ds.stop("train-llm")
    await ds.terminate("train-llm")
    assert (info.state, info.price_per_hour) == (InstanceState.RUNNING, 1.99)
    assert (spot.state, spot.preempted) == (InstanceState.TERMINATED, True)
    assert cli.argvs("dstack") == [["ps", "--json", "--project", "main"], ["ps", "--json", "--project", "main"],
                                   ["stop", "-y", "train-llm", "--project", "main"]]


# --- shared ---------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "program", "hint"), [
    ("aws", "aws", "aws configure"), ("gcp", "gcloud", "gcloud auth login"), ("azure", "az", "az login"),
    ("skypilot", "sky", "sky check"), ("dstack", "dstack", "dstack config"),
])
async def test_a_missing_cli_says_how_to_install_it(tmp_path, monkeypatch, kind, program, hint):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    with pytest.raises(ProviderUnavailable) as err:
        await build(kind, resource_group="rg").terminate("x")
    assert f"the {program} CLI is not installed" in str(err.value)
    assert hint in str(err.value)


async def test_an_id_that_looks_like_an_option_is_refused(cli):
    with pytest.raises(ProviderError):
        await build("aws").terminate("--dry-run")
    assert cli.argvs("aws") == []


# --- registry and ssh -----------------------------------------------------------------


def test_the_registry_has_one_module_per_config_type():
    from sessions.config.model import PROVIDER_TYPES

    assert tuple(registry.SPECS) == PROVIDER_TYPES
    for kind, spec in registry.SPECS.items():
        cls = registry.provider_class(kind)
        assert cls.type == kind
        if spec.default_url:
            assert cls.default_url == spec.default_url
    assert [k for k, s in registry.SPECS.items() if s.first_class] == ["runpod", "vastai", "lambda"]


async def test_ssh_powers_off_only_where_that_stops_billing():
    ran: list[str] = []

    async def run_command(command: str) -> None:
        ran.append(command)

    plain = registry.build("ssh", ProviderSettings(), run_command=run_command)
    with pytest.raises(Unsupported) as err:
        await plain.terminate("")
    assert "shutdown_stops_billing: true" in str(err.value)
    assert ran == [] and not plain.capabilities.can_stop and not plain.capabilities.can_query
    billed = registry.build("ssh", ProviderSettings(options={"shutdown_stops_billing": True}), run_command=run_command)
    await billed.terminate("")
    assert ran == ['if [ "$(id -u)" = 0 ]; then shutdown -h now; else sudo -n shutdown -h now; fi']
