#!/usr/bin/env python3
"""CDK entry point: deploy settings from context (cdk.json, -c), one stack, cdk-nag always on."""

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # before jsii loads

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from infra.config import from_context
from infra.stack import S3TorrentStack

app = cdk.App()
config = from_context(app.node.try_get_context)
S3TorrentStack(app, config.stack_name, config=config)
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
