"""Deploying artifacts to the cloud. Only `aws.py` talks to AWS; the rest is plain logic
around the clients it hands out."""

from .lambda_deploy import DeployRequest, DeployResult, deploy

__all__ = ["DeployRequest", "DeployResult", "deploy"]
