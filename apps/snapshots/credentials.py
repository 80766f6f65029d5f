"""Scoped storage credentials at the store, through its IAM API (AWS IAM's, which SeaweedFS
serves on its S3 port): one user per workspace whose policy reaches only that workspace's
prefix, and one access key per machine. Called from tasks only, never inside a transaction.

What a key may do, by the policy below: get, put and list objects under the prefix, delete
only under its `locks/` (a snapshot releases its own lock; garbage collection and every other
delete run on the control plane with the bucket's keys).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from agent.snapshot.repo import LOCKS

POLICY_NAME = "workspace"
_issuers: dict[tuple, IamIssuer] = {}


class CredentialsUnavailable(Exception):
    """The store did not issue or revoke credentials; the text says why."""


@dataclass(frozen=True)
class IssuedKey:
    access_key: str
    secret: str


def principal_for(instance_id) -> str:
    return f"dumont-ws-{instance_id}"


def workspace_policy(*, bucket: str, prefix: str) -> dict:
    """Read and write under `prefix`, list only there, delete only its locks."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*"]},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"],
             "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
            {"Effect": "Allow", "Action": ["s3:DeleteObject"],
             "Resource": [f"arn:aws:s3:::{bucket}/{prefix}{LOCKS}*"]},
        ],
    }


def issuer() -> IamIssuer:
    """The issuer for the store configured now; its client is built once per configuration (a
    boto3 client costs tens of milliseconds to make)."""
    config = (settings.DUMONT_SNAPSHOT_IAM_ENDPOINT, settings.DUMONT_SNAPSHOT_S3_REGION,
              settings.DUMONT_SNAPSHOT_S3_ACCESS_KEY, settings.DUMONT_SNAPSHOT_S3_SECRET_KEY)
    if config not in _issuers:
        _issuers[config] = IamIssuer()
    return _issuers[config]


class IamIssuer:
    def __init__(self):
        self.client = boto3.client(
            "iam",
            endpoint_url=settings.DUMONT_SNAPSHOT_IAM_ENDPOINT,
            region_name=settings.DUMONT_SNAPSHOT_S3_REGION if settings.DUMONT_SNAPSHOT_S3_REGION != "auto"
            else "us-east-1",
            aws_access_key_id=settings.DUMONT_SNAPSHOT_S3_ACCESS_KEY,
            aws_secret_access_key=settings.DUMONT_SNAPSHOT_S3_SECRET_KEY,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15),
        )

    def issue(self, *, principal: str, prefix: str) -> IssuedKey:
        """A new access key for the workspace's user (created, with its policy, if missing)."""
        policy = json.dumps(workspace_policy(bucket=settings.DUMONT_SNAPSHOT_S3_BUCKET, prefix=prefix))
        with _calls("issue credentials for", principal):
            try:
                self.client.create_user(UserName=principal)
            except ClientError as exc:
                if _code(exc) != "EntityAlreadyExists":
                    raise
            self.client.put_user_policy(UserName=principal, PolicyName=POLICY_NAME, PolicyDocument=policy)
            key = self.client.create_access_key(UserName=principal)["AccessKey"]
        return IssuedKey(access_key=key["AccessKeyId"], secret=key["SecretAccessKey"])

    def revoke(self, *, principal: str, access_key: str) -> None:
        """The key stops working; a key or user already gone is no error."""
        with _calls("revoke", access_key):
            try:
                self.client.delete_access_key(UserName=principal, AccessKeyId=access_key)
            except ClientError as exc:
                if _code(exc) != "NoSuchEntity":
                    raise

    def forget(self, *, principal: str) -> None:
        """The workspace's user goes (its machine is gone for good): its keys and policy first."""
        with _calls("remove the user", principal):
            try:
                for key in self.client.list_access_keys(UserName=principal)["AccessKeyMetadata"]:
                    self.client.delete_access_key(UserName=principal, AccessKeyId=key["AccessKeyId"])
                self.client.delete_user_policy(UserName=principal, PolicyName=POLICY_NAME)
                self.client.delete_user(UserName=principal)
            except ClientError as exc:
                if _code(exc) != "NoSuchEntity":
                    raise


@contextmanager
def _calls(what: str, subject: str):
    """The client's errors, as CredentialsUnavailable naming what was being done."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise CredentialsUnavailable(f"could not {what} {subject}: {exc}") from None


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")
