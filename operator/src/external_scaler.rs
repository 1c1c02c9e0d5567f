//! KEDA's external scaler, for users who run KEDA (which has no RocketMQ scaler of its own,
//! keda#6149): its gRPC `ExternalScaler` service, answering from a RocketConsumerGroup's
//! status, so KEDA scales a workload exactly as the operator itself would.
//!
//! A ScaledObject's trigger names the group:
//!
//! ```yaml
//! triggers:
//! - type: external
//!   metadata:
//!     scalerAddress: rocketry-external-scaler.rocketry-system:9090
//!     consumerGroup: readers        # a RocketConsumerGroup in the ScaledObject's namespace
//! ```
//!
//! - IsActive: the group has lag (so KEDA may scale a workload to zero and back);
//! - GetMetricSpec: one metric, `rocketry-<namespace>-<group>`, target 1;
//! - GetMetrics: the group's `recommendedReplicas` (what the lag asks for within its bounds
//!   and the queue count), so the HPA's ceil(value / target) is exactly that.
//!
//! The group's `spec.scaling` gives the bounds, SLO and rate, and names the same workload: the
//! operator then steps back from it (KEDA scales it through an HPA) and only keeps the status,
//! which is what the scaler answers from, current.

use kube::api::Api;
use kube::Client;
use tonic::{Request, Response, Status};

use crate::consumer_group::{RocketConsumerGroup, RocketConsumerGroupStatus};

pub mod proto {
    tonic::include_proto!("externalscaler");
}

use proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

/// The trigger metadata key that names the RocketConsumerGroup.
pub const GROUP_KEY: &str = "consumerGroup";

pub struct Scaler {
    client: Client,
}

impl Scaler {
    pub fn new(client: Client) -> Self {
        Scaler { client }
    }

    pub fn into_service(self) -> ExternalScalerServer<Scaler> {
        ExternalScalerServer::new(self)
    }

    /// The group a trigger names, its metric name, and its status.
    async fn group(
        &self,
        reference: Option<&ScaledObjectRef>,
    ) -> Result<(String, RocketConsumerGroupStatus), Status> {
        let reference = reference
            .ok_or_else(|| Status::invalid_argument("no ScaledObjectRef in the request"))?;
        let name = reference.scaler_metadata.get(GROUP_KEY).ok_or_else(|| {
            Status::invalid_argument(format!(
                "the trigger's metadata needs {GROUP_KEY}: <a RocketConsumerGroup's name>"
            ))
        })?;
        let namespace = &reference.namespace;
        let groups: Api<RocketConsumerGroup> = Api::namespaced(self.client.clone(), namespace);
        let group = groups
            .get_opt(name)
            .await
            .map_err(|error| Status::unavailable(format!("cannot read {name}: {error}")))?
            .ok_or_else(|| {
                Status::not_found(format!("no RocketConsumerGroup {name} in {namespace}"))
            })?;
        let status = group
            .status
            .filter(|status| status.lag.is_some())
            .ok_or_else(|| Status::unavailable(format!("{name} has not been measured yet")))?;
        Ok((format!("rocketry-{namespace}-{name}"), status))
    }
}

/// What GetMetrics answers: the replicas the group's rule recommends, which needs the bounds,
/// SLO and rate of its `spec.scaling`.
fn recommended(status: &RocketConsumerGroupStatus) -> Result<i64, Status> {
    status
        .recommended_replicas
        .map(i64::from)
        .ok_or_else(|| Status::failed_precondition("the group has no spec.scaling to size it by"))
}

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let (_, status) = self.group(Some(request.get_ref())).await?;
        Ok(Response::new(IsActiveResponse {
            result: status.lag.unwrap_or(0) > 0,
        }))
    }

    type StreamIsActiveStream =
        futures::stream::BoxStream<'static, Result<IsActiveResponse, Status>>;

    /// Only for KEDA's `external-push` trigger; the `external` trigger polls IsActive.
    async fn stream_is_active(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        Err(Status::unimplemented(
            "use the `external` trigger, which polls IsActive",
        ))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let (metric_name, _) = self.group(Some(request.get_ref())).await?;
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name,
                target_size: 1,
                target_size_float: 1.0,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let (metric_name, status) = self
            .group(request.get_ref().scaled_object_ref.as_ref())
            .await?;
        let value = recommended(&status)?;
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name,
                metric_value: value,
                metric_value_float: value as f64,
            }],
        }))
    }
}

/// Serves the scaler on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    client: Client,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(Scaler::new(client).into_service())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}
