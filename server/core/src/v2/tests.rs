use super::*;

fn image_sig() -> Signature {
    Signature {
        input: TensorSpec {
            name: "IMAGE".into(),
            datatype: "BYTES",
            dims: vec![1],
        },
        output: TensorSpec {
            name: "logits".into(),
            datatype: "FP32",
            dims: vec![4],
        },
        max_batch: 8,
    }
}

fn tensor_sig() -> Signature {
    Signature {
        input: TensorSpec {
            name: "input".into(),
            datatype: "FP32",
            dims: vec![3, 224, 224],
        },
        ..image_sig()
    }
}

#[test]
fn inputs_are_checked_by_name_datatype_and_shape() {
    let (img, t) = (image_sig(), tensor_sig());
    assert_eq!(img.batch_of("IMAGE", "BYTES", &[3, 1]).unwrap(), 3);
    assert_eq!(img.batch_of("IMAGE", "BYTES", &[2]).unwrap(), 2);
    assert_eq!(t.batch_of("input", "FP32", &[5, 3, 224, 224]).unwrap(), 5);
    for (name, dt, shape) in [
        ("input", "FP32", &[1, 224, 224, 3][..]),
        ("input", "FP32", &[0, 3, 224, 224]),
        ("input", "FP32", &[4]),
        ("input", "FP16", &[1, 3, 224, 224]),
        ("x", "FP32", &[1, 3, 224, 224]),
    ] {
        let e = t.batch_of(name, dt, shape).unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { .. }),
            "{name} {dt} {shape:?}"
        );
    }
    // A batch beyond max_batch_size, however large, is refused before anything is sized by it.
    for n in [9, 1 << 52, i64::MAX] {
        let e = t.batch_of("input", "FP32", &[n, 3, 224, 224]).unwrap_err();
        assert!(e.to_string().contains("max_batch_size 8"), "{e}");
    }
    assert!(
        tensors(Bytes::new(), usize::MAX / 1024).is_err(),
        "no overflow"
    );
    assert_eq!(classification(Some(0)).unwrap(), None);
    assert_eq!(classification(Some(3)).unwrap(), Some(3));
    assert!(classification(Some(-1)).is_err());
    let e = t.batch_of("input", "FP32", &[1, 224, 224, 3]).unwrap_err();
    assert!(e.to_string().contains("[N, 3, 224, 224]"), "{e}");
    assert!(img.batch_of("IMAGE", "BYTES", &[2, 3]).is_err());
    assert!(img.check_output("logits").is_ok() && img.check_output("probs").is_err());
    assert_eq!(t.input.shape(), vec![-1, 3, 224, 224]);
    assert_eq!(
        (t.input.format(), img.input.config_type()),
        ("FORMAT_NCHW", "TYPE_STRING")
    );
}

#[test]
fn tensors_are_cut_without_copies_and_refuse_bad_sizes() {
    let floats = vec![0.25f32; 2 * engine::IMAGE_BYTES];
    let raw: Bytes = floats
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<_>>()
        .into();
    let cut = tensors(raw.clone(), 2).unwrap();
    assert_eq!(cut.len(), 2);
    assert_eq!(
        cut[1].as_ptr(),
        raw[TENSOR_BYTES..].as_ptr(),
        "a slice, not a copy"
    );
    assert!(tensors(raw.slice(4..), 2).is_err());
    assert!(tensors(raw.clone(), 1).is_err());
    assert_eq!(tensors_from_values(&floats, 2).unwrap(), cut);
}

#[test]
fn outputs_are_rows_or_classification_strings_with_their_binary_forms() {
    let sig = image_sig();
    let rows: [&[f32]; 2] = [&[0.1, 3.0, 2.0, -1.0], &[5.0, 0.0, 0.0, 1.0]];
    let o = Output::new(&sig, &["a", "b", "c", "d"], &rows, Some(2));
    assert_eq!(o.shape, [2, 2]);
    let want = [
        "3.000000:1:b",
        "2.000000:2:c",
        "5.000000:0:a",
        "1.000000:3:d",
    ];
    assert_eq!(o.data, OutputData::Strings(want.map(String::from).into()));
    let raw = o.raw();
    assert_eq!(&raw[..4], &12u32.to_le_bytes());
    assert_eq!(bytes_elements(raw.into(), 8).unwrap()[3], "1.000000:3:d");
    let o = Output::new(&sig, &[], &rows, None);
    assert_eq!((o.shape, o.datatype()), ([2, 4], "FP32"));
    assert_eq!(&o.raw()[4..8], &3.0f32.to_le_bytes());
    let unlabelled = Output::new(&sig, &[], &rows[..1], Some(1));
    assert_eq!(
        unlabelled.data,
        OutputData::Strings(vec!["3.000000:1".into()])
    );
}

#[test]
fn binary_bytes_elements_split_and_refuse_short_input() {
    let mut raw = Vec::new();
    for e in [&b"ab"[..], b"", b"xyz"] {
        raw.extend_from_slice(&(e.len() as u32).to_le_bytes());
        raw.extend_from_slice(e);
    }
    let els = bytes_elements(Bytes::from(raw.clone()), 8).unwrap();
    assert_eq!(els, vec![&b"ab"[..], b"", b"xyz"]);
    assert!(bytes_elements(Bytes::from(raw[..raw.len() - 1].to_vec()), 8).is_err());
    assert!(bytes_elements(Bytes::from_static(&[1, 0]), 8).is_err());
    assert!(
        bytes_elements(Bytes::from_static(&[0; 12]), 2).is_err(),
        "3 empty elements, 2 allowed"
    );
    assert_eq!(
        bytes_elements(Bytes::from_static(&[0; 12]), 3)
            .unwrap()
            .len(),
        3
    );
}
