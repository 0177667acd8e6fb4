"""schemathesis against a real broker's /openapi.json: every JSON endpoint, with generated valid
and invalid requests, signed in as an admin (session scheme) and as a container (agent scheme).
Zero 5xx, and the document exactly as strict as the server: no valid request refused, no invalid
one accepted, every answer in the documented shape. Bounded: a fixed seed and example count.

What the document cannot say is configured below, each with its reason; everything else is
schemathesis's default checks (all of them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from pair.api import endpoints as ep
from tests.support.broker import RealBroker, real_broker
from tests.support.processes import clean_env, executable

pytestmark = pytest.mark.integration

SEED = 20261130
MAX_EXAMPLES = 25  # per operation and phase: about half a minute for the whole run

# Shared with: people who exist and are not the admin schemathesis acts as, so sharing with them
# is valid whatever else is generated. (Sharing with an email that has no account is refused
# with 422 unknown_user: a fact about the database, which a schema cannot state.)
TEAMMATES = ("owner@example.com", "friend@example.com")
# The admin endpoints that name a user by email act on this one only: run against the acting
# admin, they would reset its key or remove it mid-run.
DOOMED = "doomed@example.com"
# Shared with as a group: one that exists (sharing with a group that does not is a 404, a fact
# about the database again).
GROUPS = ("eng",)
# A new Space's (or Space key's) template: one that exists, the default (a name the broker has
# none of is a 404 again).
TEMPLATES = ("standard",)


def config(broker: RealBroker, agent_credential: str) -> str:
    key = broker.admin_key_file.read_text().strip()
    teammates = ", ".join(f'"{e}"' for e in TEAMMATES)
    groups = ", ".join(f'"{g}"' for g in GROUPS)
    templates = ", ".join(f'"{t}"' for t in TEMPLATES)
    return f"""
seed = {SEED}
workers = 1

[generation]
max-examples = {MAX_EXAMPLES}

[checks]
enabled = true

# A valid request may also meet a Space deleted meanwhile (410 Gone).
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "429"]

[auth.openapi.agent]
bearer = "{agent_credential}"

# Log in again whenever the session dies (POST /logout is one of the operations).
[auth.dynamic.openapi.session]
path = "/api/v1/login"
payload = {{ email = "{broker.admin_email}", auth_key = "{key}" }}
extract_selector = "/session_token"

[dictionaries.teammates]
values = [{teammates}]

[dictionaries.groups]
values = [{groups}]

[[operations]]
include-path-regex = "^/api/v1/admin/users/"
phases.stateful.enabled = false
parameters = {{ "path.email" = "{DOOMED}" }}

[dictionaries.templates]
values = [{templates}]

[[operations]]
include-operation-id = "post_api_v1_spaces"
parameters = {{ "body.share_with[*]" = {{ dictionary = "teammates" }}, \
"body.template" = {{ dictionary = "templates" }} }}

[[operations]]
include-operation-id = "post_api_v1_space_keys"
parameters = {{ "body.share_with[*]" = {{ dictionary = "teammates" }}, \
"body.template" = {{ dictionary = "templates" }} }}

[[operations]]
include-path = "/api/v1/spaces/{{space_id}}/shares"
parameters = {{ "body.add[*]" = {{ dictionary = "teammates" }}, "body.remove[*]" = {{ dictionary = "teammates" }}, \
"body.add_groups[*]" = {{ dictionary = "groups" }}, "body.remove_groups[*]" = {{ dictionary = "groups" }} }}

[[operations]]
include-path = "/api/v1/admin/groups/{{name}}/members"
parameters = {{ "body.add[*]" = {{ dictionary = "teammates" }}, "body.remove[*]" = {{ dictionary = "teammates" }} }}

# Whether a text is an OpenSSH public key (its base64 decodes to a key of the named type, an RSA
# key has 2048 bits or more) is beyond JSON Schema: such a key is refused with 422.
[[operations]]
include-operation-id = "post_api_v1_keys"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "409", "422"]

# The same for the SSH host keys a container reports (pair.api.fields.check_facts): one that has
# the documented `TYPE BASE64` shape but is not a key of its type is refused with 422 invalid_facts.
# And whether a text is a Space token or key this broker would register a container with (its
# signature, its record) is a fact about the broker: the registration check refuses others as
# bootstrap does (401, 409, 410).
[[operations]]
include-path-regex = "^/api/v1/agent/(bootstrap|bootstrap-key|registration-check|checkin|heartbeat)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "422", "429"]
"""


def agent_credential(broker: RealBroker, tmp_path: Path) -> str:
    """A container of a Space owned by someone else than the admin schemathesis acts as, so no
    generated request can delete the Space or take its credential."""
    owner_key = broker.add_user(TEAMMATES[0], tmp_path)
    broker.add_user(TEAMMATES[1], tmp_path)
    for group in GROUPS:
        assert broker.admin("groups", "add", group).returncode == 0
    for template in TEMPLATES:
        made = broker.admin("templates", "add", template, "--compute", "1", "--storage", "1", "--default")
        assert made.returncode == 0, made.stderr
    with httpx.Client(base_url=broker.url) as http:
        session = http.post(
            "/api/v1/login", json={"email": TEAMMATES[0], "auth_key": owner_key.read_text().strip()}
        ).json()["session_token"]
        token = http.post(
            "/api/v1/spaces", json={"name": "fuzzed"}, headers={"Authorization": f"Bearer {session}"}
        ).json()["token"]
        registration = http.post(
            "/api/v1/agent/bootstrap", json={"token": token, "instance_id": "inst_fuzz", "facts": {}}
        ).json()
    return str(registration["agent_credential"])


@pytest.mark.timeout(660)
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(tmp_path: Path) -> None:
    with real_broker(tmp_path / "data") as broker:
        toml = tmp_path / "schemathesis.toml"
        toml.write_text(config(broker, agent_credential(broker, tmp_path)))
        result = subprocess.run(
            [
                executable("schemathesis"),
                "--config-file",
                str(toml),
                "run",
                f"{broker.url}/openapi.json",
                "--checks",
                "all",
                "--continue-on-failure",
                "--max-failures",
                "20",
                # How fast examples are made is not what this test checks; on a loaded machine
                # (CI's neighbours, helpers' suites) Hypothesis's too_slow health check failed it.
                "--suppress-health-check",
                "too_slow",
            ],
            capture_output=True,
            text=True,
            env=clean_env(NO_COLOR="1", SCHEMATHESIS_HOOKS=""),
            cwd=tmp_path,
            timeout=600,  # a guard, not a figure: the run takes ~3 min alone, longer on a busy machine
            check=False,
        )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    every = len(ep.ALL)  # every JSON endpoint is in the document, and schemathesis tried each
    assert f"Operations:       {every} selected / {every} total" in report, report
    assert " failed" not in report.split("SUMMARY")[-1], report
    assert "Traceback" not in broker.output.text() and "ERROR" not in broker.output.text()
