"""The VPC the functions run in (prod by default): private subnets, endpoints, NAT for GitHub only.

AWS services are reached through endpoints (gateway endpoints for DynamoDB and S3 cost
nothing); the NAT gateway carries only what has no endpoint: GitHub's API.

No interface endpoint for `execute-api`: with private DNS it captures every
`*.execute-api.<region>.amazonaws.com` name in the VPC, and such an endpoint reaches only
private REST APIs, so the Management API of our public WebSocket API (post_to_connection)
would answer 403. Frames leave through the NAT gateway instead.
"""
from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra import outputs
from infra.stages import Stage

INTERFACE_ENDPOINTS = {
    "BedrockRuntime": ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Lambda": ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
    "XRay": ec2.InterfaceVpcEndpointAwsService.XRAY,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
}


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: Stage, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.vpc = ec2.Vpc(
            self, "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            max_azs=2,
            nat_gateways=stage.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="functions", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                        cidr_mask=20),
            ],
            gateway_endpoints={
                "DynamoDb": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
            },
        )
        self.vpc.add_flow_log("FlowLog", traffic_type=ec2.FlowLogTrafficType.REJECT)
        self.functions_sg = ec2.SecurityGroup(
            self, "FunctionsSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Chalice functions: HTTPS out only")
        self.functions_sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS and GitHub")
        endpoint_sg = ec2.SecurityGroup(self, "EndpointsSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
                                        description="Interface endpoints: HTTPS from the functions")
        endpoint_sg.add_ingress_rule(self.functions_sg, ec2.Port.tcp(443), "HTTPS from the functions")
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                name, service=service, private_dns_enabled=True, security_groups=[endpoint_sg],
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS))
        private = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids
        CfnOutput(self, outputs.SUBNET_IDS, value=Fn.join(",", private))
        CfnOutput(self, outputs.SECURITY_GROUP_ID, value=self.functions_sg.security_group_id)
