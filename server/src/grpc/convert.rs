//! Between Triton's protobuf messages and [`crate::v2`]'s types.

use super::proto::{
    self, infer_parameter::ParameterChoice, model_infer_request::InferRequestedOutputTensor,
    model_infer_response::InferOutputTensor, model_metadata_response::TensorMetadata,
};
use crate::config::Preprocess;
use crate::error::ApiError;
use crate::service::App;
use crate::v2::stats::{Snapshot, Stat};
use crate::v2::{self, bad, Output, Signature, Values};

/// The inputs of a request's one input tensor: from `raw_input_contents` (sliced, not copied)
/// or the typed `contents`; and the classification count asked of its output.
pub fn parse(
    sig: &Signature,
    req: &mut proto::ModelInferRequest,
    default: Preprocess,
) -> Result<v2::infer::Parsed, ApiError> {
    let k = classification(sig, &req.outputs)?;
    let mode = match req
        .parameters
        .get("preprocess")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => None,
        Some(ParameterChoice::StringParam(s)) => Some(s.as_str()),
        Some(_) => Some(""),
    };
    let mode = v2::preprocess(mode, default)?;
    let [input] = req.inputs.as_mut_slice() else {
        let name = &sig.input.name;
        return Err(bad(format!("the model takes exactly one input, {name}")));
    };
    let n = sig.batch_of(&input.name, &input.datatype, &input.shape)?;
    let raw = match req.raw_input_contents.as_slice() {
        [] => None,
        [raw] => Some(raw.clone()),
        _ => return Err(bad("one input takes one raw_input_contents entry")),
    };
    let contents = input.contents.take().unwrap_or_default();
    let inputs = v2::cut(sig, (&input.name, &input.shape), n, raw, || {
        Ok(match sig.input.datatype {
            "FP32" => Values::Fp32(contents.fp32_contents),
            _ => Values::Bytes(contents.bytes_contents),
        })
    })?;
    Ok((inputs, k, mode))
}

/// The classification count the request asks of its output, if any.
fn classification(
    sig: &Signature,
    outputs: &[InferRequestedOutputTensor],
) -> Result<Option<usize>, ApiError> {
    let out = match outputs {
        [] => return Ok(None),
        [out] => out,
        _ => {
            return Err(bad(format!(
                "the model has one output, {}",
                sig.output.name
            )))
        }
    };
    sig.check_output(&out.name)?;
    let k = match out
        .parameters
        .get("classification")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => None,
        Some(ParameterChoice::Int64Param(k)) => Some(*k),
        Some(ParameterChoice::Uint64Param(k)) => Some(i64::try_from(*k).unwrap_or(i64::MAX)),
        Some(_) => return Err(bad("classification must be an integer")),
    };
    v2::classification(k)
}

/// The response carrying `output`, its values in `raw_output_contents`.
pub fn response(model: String, id: String, output: &Output) -> proto::ModelInferResponse {
    proto::ModelInferResponse {
        model_name: model,
        model_version: "1".into(),
        id,
        outputs: vec![InferOutputTensor {
            name: output.name.clone(),
            datatype: output.datatype().into(),
            shape: output.shape.map(|d| d as i64).into(),
            ..Default::default()
        }],
        raw_output_contents: vec![output.raw().into()],
        ..Default::default()
    }
}

fn tensor(spec: &v2::TensorSpec) -> TensorMetadata {
    TensorMetadata {
        name: spec.name.clone(),
        datatype: spec.datatype.into(),
        shape: spec.shape(),
    }
}

/// `ModelMetadata`'s answer.
pub fn metadata(name: String, sig: &Signature) -> proto::ModelMetadataResponse {
    proto::ModelMetadataResponse {
        name,
        versions: vec!["1".into()],
        platform: "inference-gateway".into(),
        inputs: vec![tensor(&sig.input)],
        outputs: vec![tensor(&sig.output)],
    }
}

fn data_type(spec: &v2::TensorSpec) -> i32 {
    proto::DataType::from_str_name(spec.config_type()).map_or(0, |t| t as i32)
}

/// Triton's model configuration, as HTTP's `…/config` gives it.
pub fn config(app: &App, name: String, sig: &Signature) -> proto::ModelConfig {
    let format =
        proto::model_input::Format::from_str_name(sig.input.format()).map_or(0, |f| f as i32);
    let batching = proto::ModelDynamicBatching {
        max_queue_delay_microseconds: app.config.batching.max_batch_delay.as_micros() as u64,
        ..Default::default()
    };
    proto::ModelConfig {
        name,
        platform: "inference-gateway".into(),
        max_batch_size: sig.max_batch as i32,
        input: vec![proto::ModelInput {
            name: sig.input.name.clone(),
            data_type: data_type(&sig.input),
            format,
            dims: sig.input.dims.clone(),
            ..Default::default()
        }],
        output: vec![proto::ModelOutput {
            name: sig.output.name.clone(),
            data_type: data_type(&sig.output),
            dims: sig.output.dims.clone(),
            ..Default::default()
        }],
        scheduling_choice: Some(proto::model_config::SchedulingChoice::DynamicBatching(
            batching,
        )),
        ..Default::default()
    }
}

fn duration(s: Stat) -> Option<proto::StatisticDuration> {
    Some(proto::StatisticDuration {
        count: s.count,
        ns: s.ns,
    })
}

/// One model's `ModelStatistics`.
pub fn statistics(name: String, s: Snapshot) -> proto::ModelStatistics {
    proto::ModelStatistics {
        name,
        version: "1".into(),
        last_inference: s.last_inference_ms,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(proto::InferStatistics {
            success: duration(s.success),
            fail: duration(s.fail),
            queue: duration(s.queue),
            compute_input: duration(s.compute_input),
            compute_infer: duration(s.compute_infer),
            compute_output: duration(s.compute_output),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto::{model_infer_request::InferInputTensor, InferParameter};

    #[test]
    fn the_preprocess_parameter_picks_the_decode_or_is_refused() {
        let [_, sig] = crate::fuzzing::signatures_for_tests(8);
        let request = |p: Option<ParameterChoice>| {
            let mut req = proto::ModelInferRequest {
                inputs: vec![InferInputTensor {
                    name: "IMAGE".into(),
                    datatype: "BYTES".into(),
                    shape: vec![1],
                    ..Default::default()
                }],
                raw_input_contents: vec![vec![1, 0, 0, 0, 7].into()],
                ..Default::default()
            };
            if let Some(p) = p {
                let param = InferParameter {
                    parameter_choice: Some(p),
                };
                req.parameters.insert("preprocess".into(), param);
            }
            req
        };
        let mode = |p| parse(&sig, &mut request(p), Preprocess::Exact).map(|(_, _, m)| m);
        assert_eq!(mode(None).unwrap(), Preprocess::Exact);
        let draft = ParameterChoice::StringParam("draft".into());
        assert_eq!(mode(Some(draft)).unwrap(), Preprocess::Draft);
        for bad in [
            ParameterChoice::StringParam("fast".into()),
            ParameterChoice::BoolParam(true),
        ] {
            let err = mode(Some(bad)).unwrap_err();
            assert!(err.to_string().contains("preprocess"), "{err}");
        }
    }
}
