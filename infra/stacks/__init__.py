"""The CDK stacks of one stage: data, network, edge and monitoring."""
