"""CloudFormation behaviour that moto does not reproduce, checked against botocore's
service model with a Stubber: change sets that take time to compute, the real "no
updates" wording, a stack that still shows its previous status right after
ExecuteChangeSet, and a failed update with cancelled resources after the root cause."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from mlpack.deploy.stack import Stack, failure_error
from mlpack.errors import MlpackError

STACK = "mlpack-demo"
STACK_ID = f"arn:aws:cloudformation:eu-west-1:123456789012:stack/{STACK}/1"
CHANGE_SET = "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/mlpack-1/2"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def cfn() -> Any:
    return boto3.client("cloudformation", region_name="eu-west-1", aws_access_key_id="k",
                        aws_secret_access_key="s")


def _event(n: int, logical: str, kind: str, status: str, reason: str | None = None) -> dict[str, Any]:
    event = {"StackId": STACK_ID, "EventId": f"e{n}", "StackName": STACK, "LogicalResourceId": logical,
             "PhysicalResourceId": STACK_ID if kind == "AWS::CloudFormation::Stack" else f"{logical}-phys",
             "ResourceType": kind, "Timestamp": T0 + timedelta(seconds=n), "ResourceStatus": status}
    if reason:
        event["ResourceStatusReason"] = reason
    return event


def _stack(status: str) -> dict[str, Any]:
    return {"Stacks": [{"StackName": STACK, "StackId": STACK_ID, "CreationTime": T0, "StackStatus": status}]}


def _events(*events: dict[str, Any]) -> dict[str, Any]:
    return {"StackEvents": sorted(events, key=lambda e: e["Timestamp"], reverse=True)}


def _stack_under_test(cfn: Any, lines: list[str]) -> Stack:
    return Stack(cfn, STACK, lines.append, poll_seconds=0, timeout_seconds=30)


def test_a_change_set_that_takes_time_is_waited_for_and_read_in_full(cfn: Any) -> None:
    with Stubber(cfn) as stub:
        stub.add_response("create_change_set", {"Id": CHANGE_SET, "StackId": STACK_ID})
        stub.add_response("describe_change_set", {"Status": "CREATE_PENDING", "ChangeSetId": CHANGE_SET})
        stub.add_response("describe_change_set", {"Status": "CREATE_IN_PROGRESS", "ChangeSetId": CHANGE_SET})
        change = {"Type": "Resource", "ResourceChange": {"Action": "Modify", "LogicalResourceId": "Function",
                                                         "ResourceType": "AWS::Lambda::Function",
                                                         "Replacement": "False"}}
        stub.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": [change],
                                                  "NextToken": "more", "ChangeSetId": CHANGE_SET})
        stub.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": [
            {**change, "ResourceChange": {**change["ResourceChange"], "LogicalResourceId": "Role",
                                          "ResourceType": "AWS::IAM::Role", "Replacement": "True"}}]})
        result = _stack_under_test(cfn, []).create_change_set("UPDATE", "{}", None, {}, {}, "d")
        stub.assert_no_pending_responses()
    assert not result.empty
    assert result.lines() == ["  Modify  Function  AWS::Lambda::Function", "  Modify  Role  AWS::IAM::Role (replacement)"]


@pytest.mark.parametrize("reason", [
    "The submitted information didn't contain changes. Submit different information to create a change set.",
    "No updates are to be performed.",
])
def test_an_empty_change_set_means_nothing_to_do(cfn: Any, reason: str) -> None:
    with Stubber(cfn) as stub:
        stub.add_response("create_change_set", {"Id": CHANGE_SET, "StackId": STACK_ID})
        stub.add_response("describe_change_set", {"Status": "FAILED", "StatusReason": reason})
        assert _stack_under_test(cfn, []).create_change_set("UPDATE", "{}", None, {}, {}, "d").empty


def test_a_rejected_change_set_is_deleted_and_its_reason_given(cfn: Any) -> None:
    reason = "Parameters: [Timeout] must have values"
    with Stubber(cfn) as stub:
        stub.add_response("create_change_set", {"Id": CHANGE_SET, "StackId": STACK_ID})
        stub.add_response("describe_change_set", {"Status": "FAILED", "StatusReason": reason})
        stub.add_response("delete_change_set", {}, {"ChangeSetName": CHANGE_SET, "StackName": STACK})
        with pytest.raises(MlpackError, match=r"rejected the change set .*: Parameters: \[Timeout\] must have values"):
            _stack_under_test(cfn, []).create_change_set("UPDATE", "{}", None, {}, {}, "d")
        stub.assert_no_pending_responses()


def test_a_failed_update_reports_the_root_cause_after_the_stack_settles(cfn: Any) -> None:
    from mlpack.deploy.stack import ChangeSet

    before = _event(0, STACK, "AWS::CloudFormation::Stack", "UPDATE_COMPLETE")
    started = _event(1, STACK, "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", "User Initiated")
    fn_start = _event(2, "Function", "AWS::Lambda::Function", "UPDATE_IN_PROGRESS")
    fn_failed = _event(3, "Function", "AWS::Lambda::Function", "UPDATE_FAILED",
                       'Resource handler returned message: "Unzipped size must be smaller than 262144000 bytes"')
    role_cancelled = _event(4, "Role", "AWS::IAM::Role", "UPDATE_FAILED", "Resource update cancelled")
    rolling = _event(5, STACK, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_IN_PROGRESS",
                     "The following resource(s) failed to update: [Function].")
    rolled = _event(6, STACK, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE")
    lines: list[str] = []
    with Stubber(cfn) as stub:
        stub.add_response("describe_stack_events", _events(before))
        stub.add_response("execute_change_set", {})
        # Right after ExecuteChangeSet the stack may still show its previous, settled status.
        stub.add_response("describe_stacks", _stack("UPDATE_COMPLETE"))
        stub.add_response("describe_stack_events", _events(before))
        stub.add_response("describe_stacks", _stack("UPDATE_IN_PROGRESS"))
        stub.add_response("describe_stack_events", _events(before, started, fn_start))
        stub.add_response("describe_stacks", _stack("UPDATE_ROLLBACK_COMPLETE"))
        stub.add_response("describe_stack_events",
                          _events(before, started, fn_start, fn_failed, role_cancelled, rolling, rolled))
        with pytest.raises(MlpackError) as failed:
            _stack_under_test(cfn, lines).execute(ChangeSet(CHANGE_SET, STACK_ID, "UPDATE", empty=False))
        stub.assert_no_pending_responses()
    line = failed.value.one_line()
    assert line.startswith("deploy to stack mlpack-demo failed: Function (AWS::Lambda::Function) UPDATE_FAILED: "
                           'Resource handler returned message: "Unzipped size must be smaller')
    assert line.endswith("the previous version still serves (UPDATE_ROLLBACK_COMPLETE)")
    # Every new event once, in the order it happened; nothing from before the execution.
    assert [line.split()[1] for line in lines] == [
        "UPDATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "UPDATE_FAILED", "UPDATE_FAILED",
        "UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE"]


def test_without_a_resource_failure_the_stack_reason_is_given() -> None:
    events = [_event(1, STACK, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_FAILED", "Role is in use")]
    line = failure_error(STACK, "UPDATE_ROLLBACK_FAILED", events).one_line()
    assert "mlpack-demo (AWS::CloudFormation::Stack) UPDATE_ROLLBACK_FAILED: Role is in use" in line
    assert "describe-stack-events" in line


def test_an_expired_sso_login_is_one_line_with_the_fix() -> None:
    from botocore.exceptions import UnauthorizedSSOTokenError

    from mlpack.deploy.aws import aws_errors

    with pytest.raises(MlpackError) as failed, aws_errors("checking the AWS credentials"):
        raise UnauthorizedSSOTokenError()
    line = failed.value.one_line()
    assert "\n" not in line and "SSO session" in line and "aws sso login" in line
