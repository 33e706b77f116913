"""A scripted agent for `fleetgate demo`: it works on a small project in /workspace through the gate.

It reads files and runs the tests freely, is refused a payment above its limit, then asks to push its commit and
to send an email, and waits in the central queue for a person. Both are brokered actions: the controller pushes
(to the git service `demo-origin`) and sends, with credentials that never enter the sandbox.

    python3 -m agent_runtime.demo
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import List

from agent_runtime import sdk

WORKSPACE = os.environ.get("FLEETGATE_WORKSPACE", "/workspace")
FILES = {
    "calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
    "test_calc.py": (
        "import unittest\n\nfrom calc import add, mul\n\n\n"
        "class CalcTest(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
        "    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n"
    ),
}


def say(message: str) -> None:
    print("[agent] " + message, flush=True)


def shell(command: str, risk: str = "low") -> int:
    """Run a shell command only if the gate allows it (possibly as an approver edited it)."""
    try:
        decided = sdk.gate("shell", {"command": command}, risk=risk)
    except sdk.Denied as e:
        say("not allowed to run %r: %s" % (command, e.message))
        return 126
    final = str(decided.get("command", command))
    say("$ " + final)
    return subprocess.call(["/bin/sh", "-c", final], cwd=WORKSPACE)


def git(*args: str) -> None:
    subprocess.check_call(["git", *args], cwd=WORKSPACE, stdout=subprocess.DEVNULL)


def prepare_project() -> None:
    for name, text in FILES.items():
        with open(os.path.join(WORKSPACE, name), "w") as handle:
            handle.write(text)
    if not os.path.isdir(os.path.join(WORKSPACE, ".git")):
        git("init", "-q", "-b", "main")
        git("config", "user.email", "agent@fleetgate.local")
        git("config", "user.name", "demo agent")
    git("add", "calc.py", "test_calc.py")
    git("commit", "-q", "-m", "add calc with tests", "--allow-empty")


def main(argv: List[str]) -> int:
    say("starting on the calc project")
    prepare_project()
    sdk.gate("read_file", {"path": WORKSPACE + "/calc.py"})
    with open(os.path.join(WORKSPACE, "calc.py")) as handle:
        say("read calc.py (%d lines)" % len(handle.read().splitlines()))
    if shell("python3 -m unittest -q test_calc") != 0:
        return sdk_escalate("tests fail and I do not know why")
    say("tests pass")
    try:
        sdk.gate("payment.charge", {"amount": 250, "currency": "EUR", "to": "cloud-provider"}, risk="high")
        say("paid 250 EUR")
    except sdk.Denied as e:
        say("payment refused: " + e.message)
    say("asking to push the change (this waits for a person)")
    try:
        pushed = sdk.act("git.push", {"remote": "demo-origin", "branch": "main"}, risk="high")
        say("pushed main to demo-origin at %s" % str(pushed.get("commit", ""))[:12])
    except sdk.Denied as e:
        say("push not allowed: " + e.message)
    except sdk.BrokerFailed as e:
        say("push failed: " + str(e))
    say("asking to email the team (this waits for a person)")
    try:
        sent = sdk.act(
            "email.send",
            {"to": "team@example.com", "subject": "calc is ready", "body": "Tests pass; pushed to main."},
            risk="medium",
        )
        say("email sent: %s" % sent)
    except sdk.Denied as e:
        say("email not sent: " + e.message)
    except sdk.BrokerFailed as e:
        say("email failed: " + str(e))
    say("done")
    return 0


def sdk_escalate(reason: str) -> int:
    reply = sdk.escalate(reason)
    say("a person answered: " + reply)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
