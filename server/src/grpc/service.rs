//! `inference.GRPCInferenceService`: each method checks what it must, calls the transport-free
//! code of [`crate::v2`], and is observed like an HTTP request by [`Service::call`].

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::convert;
use super::proto::{self, grpc_inference_service_server::GrpcInferenceService};
use super::record::Call;
use crate::error::ApiError;
use crate::service::{repository, App};
use crate::v2::{infer, Model};

/// The full gRPC path of a method (the `route` label).
macro_rules! rpc {
    ($method:literal) => {
        concat!("/inference.GRPCInferenceService/", $method)
    };
}

/// The service, over the server's shared state.
pub struct Service {
    app: Arc<App>,
}

/// A unary method's answer.
type Answer<T> = Result<Response<T>, Status>;

impl Service {
    pub(super) fn new(app: Arc<App>) -> Self {
        Service { app }
    }

    /// Runs `work` on the message of `req` inside the call's span, then records the call as
    /// HTTP requests are recorded (metrics, exemplar, access log) and maps an error to its code.
    /// The API key was checked by the gate, from the headers, before the message was read.
    async fn call<M, T, F, Fut>(&self, route: &'static str, req: Request<M>, work: F) -> Answer<T>
    where
        F: FnOnce(M) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let app = &self.app;
        let headers = req.metadata().as_ref();
        let call = Call::start(app, route, headers, req.remote_addr(), Instant::now());
        let result = work(req.into_inner()).instrument(call.span.clone()).await;
        let request_id = call.request_id.clone();
        call.end(app, result.as_ref().map(|_| ()));
        match result {
            Ok(v) => {
                let mut r = Response::new(v);
                if let Ok(id) = request_id.parse() {
                    r.metadata_mut().insert("x-request-id", id);
                }
                Ok(r)
            }
            Err(e) => Err(Status::new(
                super::status::code(&e),
                e.message(app.config.app.debug),
            )),
        }
    }

    /// A method this server does not implement: recorded, and `UNIMPLEMENTED`.
    async fn unimplemented<M, T>(&self, route: &'static str, req: Request<M>) -> Answer<T> {
        self.call(route, req, |_| async move {
            Err(ApiError::NotImplemented(route))
        })
        .await
    }

    fn model(&self, name: &str, version: &str) -> Result<Model, ApiError> {
        Model::find(&self.app, name, Some(version))
    }

    async fn infer(
        &self,
        mut req: proto::ModelInferRequest,
    ) -> Result<proto::ModelInferResponse, ApiError> {
        let app = &self.app;
        let started = Instant::now();
        let model = self.model(&req.model_name, &req.model_version)?;
        let pipeline = app
            .pipeline()
            .inspect_err(|_| app.v2_stats.fail(model, started.elapsed()))?;
        let default = app.config.http.preprocess;
        let (_, output) = infer::serve(app, model, pipeline, started, |sig| {
            convert::parse(sig, &mut req, default)
        })
        .await?;
        let id = std::mem::take(&mut req.id);
        Ok(convert::response(model.name(app), id, &output))
    }
}

/// The extensions the gRPC service implements.
const EXTENSIONS: [&str; 3] = ["classification", "model_repository", "statistics"];

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        req: Request<proto::ServerLiveRequest>,
    ) -> Answer<proto::ServerLiveResponse> {
        let live = self.app.alive().is_ok();
        self.call(rpc!("ServerLive"), req, |_| async move {
            Ok(proto::ServerLiveResponse { live })
        })
        .await
    }

    async fn server_ready(
        &self,
        req: Request<proto::ServerReadyRequest>,
    ) -> Answer<proto::ServerReadyResponse> {
        let ready = self.app.ready().is_ok();
        self.call(rpc!("ServerReady"), req, |_| async move {
            Ok(proto::ServerReadyResponse { ready })
        })
        .await
    }

    async fn model_ready(
        &self,
        req: Request<proto::ModelReadyRequest>,
    ) -> Answer<proto::ModelReadyResponse> {
        self.call(rpc!("ModelReady"), req, |m| async move {
            self.model(&m.name, &m.version)?;
            Ok(proto::ModelReadyResponse {
                ready: self.app.ready().is_ok(),
            })
        })
        .await
    }

    async fn server_metadata(
        &self,
        req: Request<proto::ServerMetadataRequest>,
    ) -> Answer<proto::ServerMetadataResponse> {
        self.call(rpc!("ServerMetadata"), req, |_| async move {
            Ok(proto::ServerMetadataResponse {
                name: "inference-gateway".into(),
                version: self.app.config.app.version.clone(),
                extensions: EXTENSIONS.map(String::from).into(),
            })
        })
        .await
    }

    async fn model_metadata(
        &self,
        req: Request<proto::ModelMetadataRequest>,
    ) -> Answer<proto::ModelMetadataResponse> {
        self.call(rpc!("ModelMetadata"), req, |m| async move {
            let model = self.model(&m.name, &m.version)?;
            let sig = model.signature(&*self.app.pipeline()?);
            Ok(convert::metadata(model.name(&self.app), &sig))
        })
        .await
    }

    async fn model_infer(
        &self,
        req: Request<proto::ModelInferRequest>,
    ) -> Answer<proto::ModelInferResponse> {
        self.call(rpc!("ModelInfer"), req, |m| self.infer(m)).await
    }

    type ModelStreamInferStream =
        futures_util::stream::Empty<Result<proto::ModelStreamInferResponse, Status>>;

    async fn model_stream_infer(
        &self,
        req: Request<tonic::Streaming<proto::ModelInferRequest>>,
    ) -> Answer<Self::ModelStreamInferStream> {
        self.unimplemented(rpc!("ModelStreamInfer"), req).await
    }

    async fn model_config(
        &self,
        req: Request<proto::ModelConfigRequest>,
    ) -> Answer<proto::ModelConfigResponse> {
        self.call(rpc!("ModelConfig"), req, |m| async move {
            let model = self.model(&m.name, &m.version)?;
            let sig = model.signature(&*self.app.pipeline()?);
            let config = convert::config(&self.app, model.name(&self.app), &sig);
            Ok(proto::ModelConfigResponse {
                config: Some(config),
            })
        })
        .await
    }

    async fn model_statistics(
        &self,
        req: Request<proto::ModelStatisticsRequest>,
    ) -> Answer<proto::ModelStatisticsResponse> {
        self.call(rpc!("ModelStatistics"), req, |m| async move {
            let models = match m.name.as_str() {
                "" => Model::ALL.to_vec(),
                name => vec![self.model(name, &m.version)?],
            };
            let app = &self.app;
            let model_stats = models
                .into_iter()
                .map(|model| convert::statistics(model.name(app), app.v2_stats.snapshot(model)))
                .collect();
            Ok(proto::ModelStatisticsResponse { model_stats })
        })
        .await
    }

    async fn repository_index(
        &self,
        req: Request<proto::RepositoryIndexRequest>,
    ) -> Answer<proto::RepositoryIndexResponse> {
        self.call(rpc!("RepositoryIndex"), req, |_| async move {
            let models = repository::entries(&self.app)
                .into_iter()
                .map(|e| proto::repository_index_response::ModelIndex {
                    name: e.name,
                    version: e.version,
                    state: e.state.into(),
                    reason: e.reason.into(),
                })
                .collect();
            Ok(proto::RepositoryIndexResponse { models })
        })
        .await
    }

    async fn repository_model_load(
        &self,
        req: Request<proto::RepositoryModelLoadRequest>,
    ) -> Answer<proto::RepositoryModelLoadResponse> {
        self.call(rpc!("RepositoryModelLoad"), req, |m| async move {
            self.model(&m.model_name, "")?;
            repository::load(&self.app).await?;
            Ok(proto::RepositoryModelLoadResponse {})
        })
        .await
    }

    async fn repository_model_unload(
        &self,
        req: Request<proto::RepositoryModelUnloadRequest>,
    ) -> Answer<proto::RepositoryModelUnloadResponse> {
        self.call(rpc!("RepositoryModelUnload"), req, |m| async move {
            self.model(&m.model_name, "")?;
            Err(repository::unload_refused())
        })
        .await
    }

    async fn system_shared_memory_status(
        &self,
        req: Request<proto::SystemSharedMemoryStatusRequest>,
    ) -> Answer<proto::SystemSharedMemoryStatusResponse> {
        self.unimplemented(rpc!("SystemSharedMemoryStatus"), req)
            .await
    }

    async fn system_shared_memory_register(
        &self,
        req: Request<proto::SystemSharedMemoryRegisterRequest>,
    ) -> Answer<proto::SystemSharedMemoryRegisterResponse> {
        self.unimplemented(rpc!("SystemSharedMemoryRegister"), req)
            .await
    }

    async fn system_shared_memory_unregister(
        &self,
        req: Request<proto::SystemSharedMemoryUnregisterRequest>,
    ) -> Answer<proto::SystemSharedMemoryUnregisterResponse> {
        self.unimplemented(rpc!("SystemSharedMemoryUnregister"), req)
            .await
    }

    async fn cuda_shared_memory_status(
        &self,
        req: Request<proto::CudaSharedMemoryStatusRequest>,
    ) -> Answer<proto::CudaSharedMemoryStatusResponse> {
        self.unimplemented(rpc!("CudaSharedMemoryStatus"), req)
            .await
    }

    async fn cuda_shared_memory_register(
        &self,
        req: Request<proto::CudaSharedMemoryRegisterRequest>,
    ) -> Answer<proto::CudaSharedMemoryRegisterResponse> {
        self.unimplemented(rpc!("CudaSharedMemoryRegister"), req)
            .await
    }

    async fn cuda_shared_memory_unregister(
        &self,
        req: Request<proto::CudaSharedMemoryUnregisterRequest>,
    ) -> Answer<proto::CudaSharedMemoryUnregisterResponse> {
        self.unimplemented(rpc!("CudaSharedMemoryUnregister"), req)
            .await
    }

    async fn trace_setting(
        &self,
        req: Request<proto::TraceSettingRequest>,
    ) -> Answer<proto::TraceSettingResponse> {
        self.unimplemented(rpc!("TraceSetting"), req).await
    }

    async fn log_settings(
        &self,
        req: Request<proto::LogSettingsRequest>,
    ) -> Answer<proto::LogSettingsResponse> {
        self.unimplemented(rpc!("LogSettings"), req).await
    }
}
