"""Prepares a fresh moto server (tests/common/moto.rs) while it still accepts
unsigned requests, then switches its request authentication on.

moto 5.2.1 checks signatures once `ActionAuthenticatorMixin.request_count`
reaches `settings.INITIAL_NO_AUTH_ACTION_COUNT` (read from the environment at
start, infinite by default). `POST /moto-api/reset-auth` with a number sets that
limit and zeroes the count at run time; with 0 every later request is checked
against the keys moto itself issued (SigV4 recomputed by botocore's signer).

Usage: moto_setup.py ENDPOINT CA_FILE
Prints one JSON object: the keys and ARNs the tests use.
"""

import json
import ssl
import sys
import urllib.request

import boto3

ACCOUNT = "123456789012"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
S3_SQS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"}],
}


def main():
    endpoint, ca = sys.argv[1], sys.argv[2]
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
        verify=ca,
    )
    # The root user of the AWS secrets engine: may create users and keys and
    # assume roles.
    iam.create_user(UserName="bao-root")
    iam.put_user_policy(UserName="bao-root", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
    root = iam.create_access_key(UserName="bao-root")["AccessKey"]
    # The role assumed_role credentials are minted for.
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/bao-root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="agent-role", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="agent-role", PolicyName="s3-sqs", PolicyDocument=json.dumps(S3_SQS))
    # A long-lived key for the static-credentials form.
    iam.create_user(UserName="static-agent")
    iam.put_user_policy(UserName="static-agent", PolicyName="s3-sqs", PolicyDocument=json.dumps(S3_SQS))
    static = iam.create_access_key(UserName="static-agent")["AccessKey"]

    request = urllib.request.Request(
        endpoint + "/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ca)) as answer:
        assert json.load(answer)["status"] == "ok"

    print(
        json.dumps(
            {
                "root_access_key_id": root["AccessKeyId"],
                "root_secret_access_key": root["SecretAccessKey"],
                "role_arn": role["Role"]["Arn"],
                "static_access_key_id": static["AccessKeyId"],
                "static_secret_access_key": static["SecretAccessKey"],
            }
        )
    )


if __name__ == "__main__":
    main()
