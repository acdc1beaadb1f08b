"""What on-call watches: the dashboard, alarms into one SNS topic, the cost budget, log retention,
and (once the REST API's URL is known) the availability canary on `/health`.

The app's metrics (namespace, names, dimensions) come from chalicelib/observability/metric_names.py, the module the
app's Embedded Metric Format logs are written from; AWS's own come from Lambda, DynamoDB, WAF and Synthetics.
"""
from __future__ import annotations

from typing import Any

from aws_cdk import (
    Annotations,
    ArnFormat,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
)
from aws_cdk import (
    aws_budgets as budgets,
)
from aws_cdk import (
    aws_cloudwatch as cw,
)
from aws_cdk import (
    aws_cloudwatch_actions as cw_actions,
)
from aws_cdk import (
    aws_iam as iam,
)
from aws_cdk import (
    aws_logs as logs,
)
from aws_cdk import (
    aws_sns as sns,
)
from aws_cdk import (
    aws_sns_subscriptions as subscriptions,
)
from constructs import Construct

from chalicelib.observability import metric_names as metrics
from infra import outputs, resources
from infra.stacks.availability import HealthCanary
from infra.stacks.edge import EDGE_REGION, web_acl_name
from infra.stacks.waf import api_web_acl_name
from infra.stages import Stage

FIVE_MINUTES = Duration.minutes(5)


def alarm_topic_name(stage: str) -> str:
    """The stage's one alarm topic; the audit stack's CIS alarms find it by this name."""
    return f"{resources.PROJECT}-{stage}-alarms"


class MonitoringStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, stage: Stage,
                 alarm_email: str | None = None, health_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.stage = stage
        self.functions = [resources.function_name(stage.name, f) for f in resources.FUNCTIONS]
        self.tables = [t.physical_name(stage.name) for t in resources.TABLES]
        self.topic = sns.Topic(self, "AlarmTopic", topic_name=alarm_topic_name(stage.name),
                               enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self._allow_alarms_to_publish()
        self._log_groups()
        self._alarms()
        self._budget()
        self.health = self._health_canary(health_url)
        dashboard = self._dashboard()
        CfnOutput(self, outputs.ALARM_TOPIC_ARN, value=self.topic.topic_arn)
        CfnOutput(self, outputs.DASHBOARD_NAME, value=dashboard.dashboard_name)

    # Metrics ------------------------------------------------------------------------------
    def app(self, metric: metrics.Metric, statistic: str = "Sum", period: Duration = FIVE_MINUTES,
            label: str | None = None) -> cw.Metric:
        return cw.Metric(namespace=metrics.NAMESPACE, metric_name=metric.name,
                         dimensions_map={metrics.STAGE: self.stage.name}, statistic=statistic,
                         period=period, label=label or metric.name)

    def by(self, metric: metrics.Metric, dimension: str, statistic: str = "Sum") -> cw.MathExpression:
        """One line per value of a dimension (every action, model or code seen), via SEARCH."""
        assert (metrics.STAGE, dimension) in metric.dimension_sets, f"{metric.name} has no {dimension}"
        return cw.MathExpression(
            expression=(f"SEARCH('{{{metrics.NAMESPACE},{metrics.STAGE},{dimension}}} "
                        f"MetricName=\"{metric.name}\" {metrics.STAGE}=\"{self.stage.name}\"', "
                        f"'{statistic}', 300)"),
            using_metrics={}, label="", period=FIVE_MINUTES)

    def lambda_metric(self, name: str, function: str, statistic: str = "Sum") -> cw.Metric:
        return cw.Metric(namespace="AWS/Lambda", metric_name=name, dimensions_map={"FunctionName": function},
                         statistic=statistic, period=FIVE_MINUTES, label=function.rsplit("-", 1)[-1])

    def _summed(self, metric_list: list[cw.Metric], label: str) -> cw.MathExpression:
        using = {f"m{i}": m for i, m in enumerate(metric_list)}
        return cw.MathExpression(expression=f"SUM([{', '.join(using)}])", using_metrics=using,
                                 label=label, period=FIVE_MINUTES)

    def dynamodb_throttles(self) -> cw.MathExpression:
        return self._summed([
            cw.Metric(namespace="AWS/DynamoDB", metric_name=name, dimensions_map={"TableName": table},
                      statistic="Sum", period=FIVE_MINUTES)
            for table in self.tables for name in ("ReadThrottleEvents", "WriteThrottleEvents")
        ], "DynamoDB throttle events")

    # Resources ----------------------------------------------------------------------------
    def _log_groups(self) -> None:
        """Chalice creates no log groups with retention; these exist before the functions do."""
        for function in resources.FUNCTIONS:
            group = logs.CfnLogGroup(self, f"Logs{''.join(w.capitalize() for w in function.split('_'))}",
                                     log_group_name=f"/aws/lambda/{resources.function_name(self.stage.name, function)}",
                                     retention_in_days=self.stage.log_retention_days)
            group.apply_removal_policy(RemovalPolicy.RETAIN if self.stage.deletion_protection
                                       else RemovalPolicy.DESTROY)

    def _alarm(self, construct_id: str, metric: cw.IMetric, threshold: float, description: str,
               evaluation_periods: int = 3, datapoints: int = 2,
               comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
               missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING) -> cw.Alarm:
        alarm = cw.Alarm(
            self, construct_id, metric=metric, threshold=threshold,
            alarm_name=f"{resources.PROJECT}-{self.stage.name}-{construct_id}",
            alarm_description=description, comparison_operator=comparison,
            evaluation_periods=evaluation_periods, datapoints_to_alarm=datapoints, treat_missing_data=missing)
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        return alarm

    def _alarms(self) -> None:
        s = self.stage
        # Server-side failures only (metric_names.SERVER_ERROR_CODES): a client's mistakes and its
        # rate-limit or budget refusals are on the dashboard, but one user must not page on-call.
        error_rate = cw.MathExpression(
            expression="IF(requests > 0, 100 * FILL(errors, 0) / requests, 0)",
            using_metrics={"requests": self.app(metrics.REQUESTS), "errors": self.app(metrics.SERVER_ERRORS)},
            label="Server errors per 100 requests", period=FIVE_MINUTES)
        self._alarm("error-rate", error_rate, s.error_rate_percent,
                    f"More than {s.error_rate_percent} % of requests failed on our side "
                    f"({', '.join(sorted(metrics.SERVER_ERROR_CODES))})")
        self._alarm("lambda-throttles",
                    self._summed([self.lambda_metric("Throttles", f) for f in self.functions], "Lambda throttles"),
                    0, "A Lambda function was throttled (account or reserved concurrency)")
        self._alarm("lambda-errors",
                    self._summed([self.lambda_metric("Errors", f) for f in self.functions], "Lambda errors"),
                    5, "Lambda functions failed (uncaught exceptions, timeouts)")
        self._alarm("dynamodb-throttles", self.dynamodb_throttles(), 0, "DynamoDB throttled the app")
        self._alarm("upstream-throttled", self.app(metrics.UPSTREAM_THROTTLED), 10,
                    "Bedrock or GitHub answered more than 10 requests in 5 minutes with throttling (retried "
                    "or not; those that reached users are Errors UPSTREAM_THROTTLED): raise quotas or lower limits")
        self._alarm("chat-latency-p90", self.app(metrics.CHAT_LATENCY, "p90"), s.chat_latency_p90_ms,
                    f"p90 chat latency above {s.chat_latency_p90_ms} ms")
        tokens = cw.MathExpression(
            expression="FILL(inputTokens, 0) + FILL(outputTokens, 0)",
            using_metrics={"inputTokens": self.app(metrics.INPUT_TOKENS, period=Duration.hours(1)),
                           "outputTokens": self.app(metrics.OUTPUT_TOKENS, period=Duration.hours(1))},
            label="Tokens per hour", period=Duration.hours(1))
        self._alarm("tokens-per-hour", tokens, s.tokens_per_hour,
                    f"More than {s.tokens_per_hour} Bedrock tokens in an hour: the model bill is running",
                    evaluation_periods=1, datapoints=1)
        # A spike, not a trend: one 5-minute period above the stage's threshold pages (expired tokens of
        # honest clients are a few per user and day; a flood is someone trying tokens).
        self._alarm("auth-refusals", self.app(metrics.AUTH_REFUSED), s.auth_refusals_per_5min,
                    f"More than {s.auth_refusals_per_5min} tokens refused in 5 minutes by $connect or the "
                    "authorizers: credential stuffing, a leaked or forged token being tried, or a broken client",
                    evaluation_periods=1, datapoints=1)

    def _health_canary(self, url: str | None) -> HealthCanary | None:
        """The canary and its alarm where the stage wants one and the URL is known; otherwise the synth says why."""
        if not self.stage.health_canary:
            Annotations.of(self).add_info(f"no health canary: health_canary is off for stage {self.stage.name}")
            return None
        if url is None:
            Annotations.of(self).add_info(
                "no health canary yet: the REST API's URL is unknown. After `chalice deploy`, deploy this stack "
                "again (it reads .chalice/deployed/<stage>.json) or pass -c health_url=https://.../health")
            return None
        health = HealthCanary(self, "Health", stage=self.stage.name, url=url)
        # Two failed checks in 15 minutes page; so does a canary that stopped running (missing data).
        self._alarm("availability", health.success_percent(), 100,
                    f"GET {url} failed (not HTTP 200 with status ok) in 2 of the last 3 checks, or the canary "
                    "stopped running", comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                    missing=cw.TreatMissingData.BREACHING)
        CfnOutput(self, outputs.HEALTH_CANARY_NAME, value=health.canary.canary_name)
        return health

    def _allow_alarms_to_publish(self) -> None:
        """A topic policy replaces SNS's default one, which let the account's CloudWatch alarms publish: say it
        again, for this stage's alarms (ours and the audit stack's CIS alarms) only."""
        alarms = self.format_arn(service="cloudwatch", resource="alarm",
                                 resource_name=f"{resources.PROJECT}-{self.stage.name}-*",
                                 arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish", actions=["sns:Publish"], resources=[self.topic.topic_arn],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            conditions={"StringEquals": {"aws:SourceAccount": self.account},
                        "ArnLike": {"aws:SourceArn": alarms}}))

    def _budget(self) -> None:
        # AWS Budgets publishes to the topic only if the topic's policy lets it.
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="BudgetsPublish", actions=["sns:Publish"], resources=[self.topic.topic_arn],
            principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
            conditions={"StringEquals": {"aws:SourceAccount": self.account}}))
        subscriber = [budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=self.topic.topic_arn)]

        def notify(kind: str, percent: int) -> budgets.CfnBudget.NotificationWithSubscribersProperty:
            return budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    notification_type=kind, comparison_operator="GREATER_THAN", threshold=percent,
                    threshold_type="PERCENTAGE"),
                subscribers=subscriber)

        budgets.CfnBudget(
            self, "CostBudget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=f"{resources.PROJECT}-{self.stage.name}-monthly",
                budget_type="COST", time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=self.stage.monthly_budget_usd, unit="USD")),
            notifications_with_subscribers=[notify("ACTUAL", 80), notify("FORECASTED", 100)],
        )

    def _dashboard(self) -> cw.Dashboard:
        m = metrics
        row = [
            cw.GraphWidget(title="Connections opened", left=[self.app(m.CONNECTIONS)], width=8),
            cw.GraphWidget(title="Messages by action", left=[self.by(m.REQUESTS, m.ACTION)], width=8),
            cw.GraphWidget(title="Frames sent", left=[self.app(m.FRAMES_SENT)], width=8),
        ]
        latency = [
            cw.GraphWidget(title="Chat latency and time to first token (ms)", width=12, left=[
                self.app(m.CHAT_LATENCY, "p50", label="chat p50"), self.app(m.CHAT_LATENCY, "p90", label="chat p90"),
                self.app(m.TIME_TO_FIRST_TOKEN, "p50", label="first token p50"),
                self.app(m.TIME_TO_FIRST_TOKEN, "p90", label="first token p90")]),
            cw.GraphWidget(title="Tokens in and out", width=12,
                           left=[self.app(m.INPUT_TOKENS), self.app(m.OUTPUT_TOKENS)]),
        ]
        rejections = [
            cw.GraphWidget(title="Rate-limit and budget rejections, upstream throttles", width=12, left=[
                self.app(m.RATE_LIMITED), self.app(m.BUDGET_EXCEEDED), self.app(m.UPSTREAM_THROTTLED)]),
            cw.GraphWidget(title="Errors by code", width=12, left=[self.by(m.ERRORS, m.CODE)],
                           right=[self.app(m.SERVER_ERRORS, label="ServerErrors (the error-rate alarm's)")]),
        ]
        aws_row = [
            cw.GraphWidget(title="Lambda errors", width=6,
                           left=[self.lambda_metric("Errors", f) for f in self.functions]),
            cw.GraphWidget(title="Lambda throttles", width=6,
                           left=[self.lambda_metric("Throttles", f) for f in self.functions]),
            cw.GraphWidget(title="Lambda duration p90 (ms)", width=6,
                           left=[self.lambda_metric("Duration", f, "p90") for f in self.functions]),
            cw.GraphWidget(title="DynamoDB throttles", width=6, left=[self.dynamodb_throttles()]),
        ]
        return cw.Dashboard(self, "Dashboard", dashboard_name=f"{resources.PROJECT}-{self.stage.name}",
                            widgets=[row, latency, rejections, aws_row, self._security_row()])

    def _security_row(self) -> list[cw.IWidget]:
        m = metrics
        # The web ACL's own metrics live in us-east-1 (CloudFront scope): every rule's blocks, and ALL.
        waf_blocked = cw.MathExpression(
            expression=(f"SEARCH('{{AWS/WAFV2,Rule,WebACL}} MetricName=\"BlockedRequests\" "
                        f"WebACL=\"{web_acl_name(self.stage.name)}\"', 'Sum', 300)"),
            using_metrics={}, label="", period=FIVE_MINUTES, search_region=EDGE_REGION)
        # The REST API's REGIONAL web ACL (the waf stack), in this stack's region: its metrics also have a Region.
        api_waf_blocked = cw.MathExpression(
            expression=(f"SEARCH('{{AWS/WAFV2,Region,Rule,WebACL}} MetricName=\"BlockedRequests\" "
                        f"WebACL=\"{api_web_acl_name(self.stage.name)}\"', 'Sum', 300)"),
            using_metrics={}, label="", period=FIVE_MINUTES)
        graphs: list[tuple[str, list[cw.IMetric], str | None]] = [
            ("Auth refusals by reason", [self.by(m.AUTH_REFUSED, m.REASON)], None),
            ("Forbidden by action", [self.by(m.FORBIDDEN, m.ACTION)], None),
            ("WAF blocked requests by rule (web page)", [waf_blocked], EDGE_REGION),
            ("WAF blocked requests by rule (REST API)", [api_waf_blocked], None),
        ]
        if self.health is not None:
            graphs.append(("Health checks passed (%)", [self.health.success_percent()], None))
        width = 24 // len(graphs)
        return [cw.GraphWidget(title=title, left=left, region=region, width=width) for title, left, region in graphs]
