"""CloudFormation through change sets: create or update, see what would change, wait
with progress until the stack settles, and explain a failure from the stack events.

Every change goes through a change set, so a re-deploy of the same artifact is
recognised by CloudFormation itself (an empty change set) and changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ..errors import MlpackError
from .aws import AwsError, aws_errors

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
SETTLED_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
SETTLED_FAILED = {
    "CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED", "DELETE_COMPLETE",
    "IMPORT_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_FAILED",
}
# States in which CloudFormation accepts no update; the stack holds no working resources.
REPLACEABLE = {"ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"}
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
_CANCELLED = ("cancelled", "canceled")


@dataclass
class ChangeSet:
    arn: str
    stack_id: str
    kind: str  # CREATE or UPDATE
    empty: bool
    changes: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        if self.empty:
            return ["  (no changes)"]
        out = []
        for change in self.changes:
            rc = change.get("ResourceChange", {})
            replace = " (replacement)" if rc.get("Replacement") == "True" else ""
            out.append(f"  {rc.get('Action', '?'):<7} {rc.get('LogicalResourceId', '?')}  "
                       f"{rc.get('ResourceType', '?')}{replace}")
        return out


class Stack:
    """One named stack, driven through a CloudFormation client."""

    def __init__(self, cfn: Any, name: str, log: Callable[[str], None],
                 poll_seconds: float = 2.0, timeout_seconds: float = 1800.0) -> None:
        self.cfn, self.name, self.log = cfn, name, log
        self.poll_seconds, self.timeout_seconds = poll_seconds, timeout_seconds

    def describe(self) -> dict[str, Any] | None:
        try:
            with aws_errors(f"describing stack {self.name}"):
                return self.cfn.describe_stacks(StackName=self.name)["Stacks"][0]
        except AwsError as exc:
            if exc.code == "ValidationError" and "does not exist" in exc.aws_message:
                return None
            raise

    def prepare(self) -> str:
        """CREATE or UPDATE; clears a stack that a failed first create (or a dry run) left."""
        current = self.describe()
        if current is None:
            return "CREATE"
        status = current["StackStatus"]
        if status in REPLACEABLE:
            self.log(f"  stack {self.name} is {status} and holds no resources; deleting it first")
            self.delete()
            return "CREATE"
        if status == "UPDATE_ROLLBACK_FAILED":
            raise MlpackError(f"stack {self.name} is UPDATE_ROLLBACK_FAILED: its rollback did not finish",
                              f"fix the resource named in its events, run `aws cloudformation "
                              f"continue-update-rollback --stack-name {self.name}`, then rerun")
        if status == "DELETE_FAILED":
            raise MlpackError(f"stack {self.name} is DELETE_FAILED",
                              "delete it in the CloudFormation console (retaining what it cannot delete) and rerun")
        if status.endswith("_IN_PROGRESS"):
            raise MlpackError(f"stack {self.name} is busy ({status})",
                              "wait until it settles (`aws cloudformation describe-stacks`) and rerun")
        return "UPDATE"

    def delete(self) -> None:
        with aws_errors(f"deleting stack {self.name}"):
            self.cfn.delete_stack(StackName=self.name)
        deadline = time.monotonic() + self.timeout_seconds
        while (current := self.describe()) is not None and current["StackStatus"] != "DELETE_COMPLETE":
            if current["StackStatus"] == "DELETE_FAILED" or time.monotonic() > deadline:
                raise MlpackError(f"stack {self.name} could not be deleted ({current['StackStatus']})",
                                  "delete it in the CloudFormation console and rerun")
            time.sleep(self.poll_seconds)

    def create_change_set(self, kind: str, body: str | None, url: str | None,
                          parameters: dict[str, str], tags: dict[str, str], description: str,
                          role_arn: str | None = None) -> ChangeSet:
        name = "mlpack-" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")
        source: dict[str, str] = {"TemplateURL": url} if url else {"TemplateBody": body or ""}
        if role_arn:  # CloudFormation acts as this service role instead of the caller
            source["RoleARN"] = role_arn
        with aws_errors(f"creating a change set for stack {self.name}"):
            created = self.cfn.create_change_set(
                StackName=self.name, ChangeSetName=name, ChangeSetType=kind, **source,
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
                Capabilities=CAPABILITIES, Description=description[:1024],
                Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
            )
        arn, deadline = created["Id"], time.monotonic() + self.timeout_seconds
        while True:
            with aws_errors(f"reading change set {name}"):
                described = self.cfn.describe_change_set(ChangeSetName=arn, StackName=self.name)
            status, reason = described["Status"], described.get("StatusReason") or ""
            if status == "CREATE_COMPLETE":
                changes = described.get("Changes", [])
                while described.get("NextToken"):
                    described = self.cfn.describe_change_set(ChangeSetName=arn, StackName=self.name,
                                                             NextToken=described["NextToken"])
                    changes += described.get("Changes", [])
                return ChangeSet(arn, created["StackId"], kind, empty=not changes, changes=changes)
            if status == "FAILED":
                if any(text in reason for text in _NO_CHANGES):
                    return ChangeSet(arn, created["StackId"], kind, empty=True)
                self.delete_change_set(arn)
                raise MlpackError(f"CloudFormation rejected the change set for stack {self.name}: {reason}",
                                  "fix the template or parameters named above and rerun")
            if time.monotonic() > deadline:
                raise MlpackError(f"change set {name} was still {status} after {self.timeout_seconds:.0f}s")
            time.sleep(self.poll_seconds)

    def delete_change_set(self, change_set: ChangeSet | str) -> None:
        arn = change_set.arn if isinstance(change_set, ChangeSet) else change_set
        with aws_errors(f"deleting change set {arn}"):
            self.cfn.delete_change_set(ChangeSetName=arn, StackName=self.name)

    def discard(self, change_set: ChangeSet) -> None:
        """Drop an unexecuted change set; a CREATE one also leaves an empty stack to remove."""
        self.delete_change_set(change_set)
        if change_set.kind == "CREATE":
            self.delete()

    def execute(self, change_set: ChangeSet) -> dict[str, Any]:
        """Run the change set and follow the stack events until it settles.

        Returns the settled stack; raises with the failing resource's reason. A settled
        status counts only once its own stack event, newer than the execution, has been
        read: right after ExecuteChangeSet the stack may still show its previous status."""
        started = datetime.now(timezone.utc)
        seen = {e["EventId"] for e in self._events_since(change_set.stack_id, set(), pages=1)}
        with aws_errors(f"executing the change set on stack {self.name}"):
            self.cfn.execute_change_set(ChangeSetName=change_set.arn, StackName=self.name)
        try:
            return self._follow(change_set, seen, started)
        except KeyboardInterrupt:
            raise MlpackError(f"stopped watching stack {self.name}; CloudFormation carries on with the change",
                              f"follow it with `aws cloudformation describe-stack-events --stack-name {self.name}`"
                              ) from None

    def _follow(self, change_set: ChangeSet, seen: set[str], started: datetime) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_seconds
        events: list[dict[str, Any]] = []
        while True:
            stack = self.describe_id(change_set.stack_id)  # before the events, so its event is among them
            status = stack["StackStatus"]
            for event in self._events_since(change_set.stack_id, seen):
                seen.add(event["EventId"])
                events.append(event)
                self.log(_event_line(event, started))
            settled = any(e.get("PhysicalResourceId") == change_set.stack_id and e.get("ResourceStatus") == status
                          for e in events)
            if settled and status in SETTLED_OK:
                return stack
            if settled and status in SETTLED_FAILED:
                raise failure_error(self.name, status, events)
            if time.monotonic() > deadline:
                raise MlpackError(f"stack {self.name} was still {status} after {self.timeout_seconds:.0f}s",
                                  "follow it with `aws cloudformation describe-stack-events`")
            time.sleep(self.poll_seconds)

    def describe_id(self, stack_id: str) -> dict[str, Any]:
        with aws_errors(f"describing stack {self.name}"):
            return self.cfn.describe_stacks(StackName=stack_id)["Stacks"][0]

    def _events_since(self, stack_id: str, seen: set[str], pages: int | None = None) -> list[dict[str, Any]]:
        """Events not seen yet, oldest first. CloudFormation lists newest first, so reading
        stops at the first known event instead of paging through the stack's history."""
        fresh: list[dict[str, Any]] = []
        with aws_errors(f"reading the events of stack {self.name}"):
            for number, page in enumerate(self.cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id)):
                for event in page["StackEvents"]:
                    if event["EventId"] in seen:
                        return fresh[::-1]
                    fresh.append(event)
                if pages is not None and number + 1 >= pages:
                    break
        return fresh[::-1]


def failure_error(stack_name: str, status: str, events: list[dict[str, Any]]) -> MlpackError:
    """The root cause of a failed deploy: the first resource that failed, not the ones
    CloudFormation cancelled after it, nor the stack's own summary."""
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("_FAILED")]
    causes = [e for e in failed if not any(c in (e.get("ResourceStatusReason") or "").lower() for c in _CANCELLED)]
    resource_causes = [e for e in causes if e.get("ResourceType") != "AWS::CloudFormation::Stack"]
    cause = (resource_causes or causes or failed or [None])[0]
    if cause is None:
        what = "no resource reported a failure"
    else:
        what = (f"{cause['LogicalResourceId']} ({cause.get('ResourceType', '?')}) "
                f"{cause['ResourceStatus']}: {cause.get('ResourceStatusReason') or 'no reason given'}")
    if status == "UPDATE_ROLLBACK_COMPLETE":
        outcome = "CloudFormation rolled the stack back; the previous version still serves"
    elif status == "ROLLBACK_COMPLETE":
        outcome = "CloudFormation rolled the new stack back; the next deploy replaces it"
    else:
        outcome = f"the stack is {status}; inspect it with `aws cloudformation describe-stack-events`"
    return MlpackError(f"deploy to stack {stack_name} failed: {what}", f"{outcome} ({status})")


def _event_line(event: dict[str, Any], started: datetime) -> str:
    stamp = event.get("Timestamp")
    offset = f"{(stamp - started).total_seconds():5.1f}s" if isinstance(stamp, datetime) else "     "
    reason = event.get("ResourceStatusReason")
    return (f"  {offset}  {event.get('ResourceStatus', '?'):<28} {event.get('LogicalResourceId', '?')}"
            f" ({event.get('ResourceType', '?')})" + (f": {reason}" if reason else ""))
