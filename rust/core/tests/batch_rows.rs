//! Batching primitives: `concat` along dimension 0 and `split` back by row counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use tensorgate_core::batch::{concat, split};
use tensorgate_core::{DataType, ErrorKind, Parameter, Parameters, Tensor};

/// Deterministic raw data for `count` elements of `datatype`, distinct per `seed`.
fn sample_data(datatype: DataType, count: usize, seed: u8) -> Bytes {
    match datatype.element_size() {
        Some(size) => {
            let bytes: Vec<u8> = (0..count * size)
                .map(|i| {
                    if datatype == DataType::Bool {
                        u8::from((i + usize::from(seed)) % 3 == 0)
                    } else {
                        u8::try_from((i * 7 + usize::from(seed) * 31) % 251).unwrap()
                    }
                })
                .collect();
            Bytes::from(bytes)
        }
        None => {
            // Variable lengths, including empty and non-UTF-8 elements.
            let elements: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    let len = (i + usize::from(seed)) % 4;
                    (0..len)
                        .map(|j| u8::try_from((j * 97 + i + usize::from(seed)) % 256).unwrap())
                        .collect()
                })
                .collect();
            raw_bytes(&elements)
        }
    }
}

fn sample(name: &str, datatype: DataType, shape: &[usize], seed: u8) -> Tensor {
    tensor(
        name,
        datatype,
        shape,
        sample_data(datatype, shape.iter().product(), seed),
    )
}

fn assert_within(piece: &Tensor, source: &Tensor) {
    assert!(
        points_into(piece.data(), source.data()),
        "piece of '{}' is not a view of the source",
        piece.name
    );
}

#[test]
fn concat_and_split_every_datatype() {
    for datatype in DataType::ALL {
        for trailing in [&[][..], &[3][..], &[2, 2][..], &[0][..]] {
            let parts: Vec<Tensor> = [2usize, 1, 0, 3]
                .iter()
                .enumerate()
                .map(|(i, &rows)| {
                    let mut shape = vec![rows];
                    shape.extend_from_slice(trailing);
                    sample("x", datatype, &shape, u8::try_from(i).unwrap())
                })
                .collect();
            let merged = concat(&parts).unwrap();
            let mut shape = vec![6];
            shape.extend_from_slice(trailing);
            assert_eq!(merged.shape(), shape, "{datatype} {trailing:?}");
            assert_eq!(merged.datatype(), datatype);
            let expected: Vec<u8> = parts.iter().flat_map(|t| t.data().to_vec()).collect();
            assert_eq!(&merged.data()[..], &expected[..], "{datatype} {trailing:?}");
            // The result is a valid tensor.
            let rebuilt =
                Tensor::new("x", datatype, shape.clone(), merged.data().clone(), &LIMITS).unwrap();
            assert_eq!(rebuilt, merged);

            let pieces = split(&merged, &[2, 1, 0, 3]).unwrap();
            assert_eq!(pieces, parts, "{datatype} {trailing:?}");
            for piece in &pieces {
                assert_within(piece, &merged);
            }
        }
    }
}

#[test]
fn bytes_split_follows_variable_element_lengths() {
    let merged = tensor(
        "s",
        DataType::Bytes,
        &[3, 2],
        raw_bytes(&[&b""[..], b"a", b"bc", b"\xff\xfe\xfd", b"", b"defg"]),
    );
    let pieces = split(&merged, &[1, 0, 2]).unwrap();
    assert_eq!(
        pieces[0],
        tensor("s", DataType::Bytes, &[1, 2], raw_bytes(&[&b""[..], b"a"]))
    );
    assert_eq!(
        pieces[1],
        tensor("s", DataType::Bytes, &[0, 2], Bytes::new())
    );
    assert_eq!(
        pieces[2],
        tensor(
            "s",
            DataType::Bytes,
            &[2, 2],
            raw_bytes(&[&b"bc"[..], b"\xff\xfe\xfd", b"", b"defg"])
        )
    );
    let elements: Vec<Bytes> = pieces[2].bytes_elements().collect();
    assert_eq!(elements.len(), 4);
    for piece in &pieces {
        assert_within(piece, &merged);
    }
}

#[test]
fn split_is_zero_copy_at_the_right_offsets() {
    let source = vector("f", DataType::Fp32, &[1.0f32, 2.0, 3.0, 4.0, 5.0]);
    let pieces = split(&source, &[2, 3]).unwrap();
    let base = source.data().as_ptr() as usize;
    assert_eq!(pieces[0].data().as_ptr() as usize, base);
    assert_eq!(pieces[1].data().as_ptr() as usize, base + 8);
    assert_eq!(f32s(pieces[1].data()), [3.0, 4.0, 5.0]);
    assert_eq!(pieces[1].shape(), [3]);
}

#[test]
fn split_keeps_name_and_parameters() {
    let params = Parameters::from([("p".to_owned(), Parameter::Int64(1))]);
    let source = sample("t", DataType::Int16, &[4, 2], 0).with_parameters(params.clone());
    for piece in split(&source, &[1, 3]).unwrap() {
        assert_eq!(piece.name, "t");
        assert_eq!(piece.parameters, params);
    }
}

#[test]
fn concat_keeps_first_parameters() {
    let first = sample("t", DataType::Int8, &[1], 0)
        .with_parameters(Parameters::from([("a".to_owned(), Parameter::Bool(true))]));
    let second = sample("t", DataType::Int8, &[1], 1)
        .with_parameters(Parameters::from([("b".to_owned(), Parameter::Bool(true))]));
    let merged = concat(&[first.clone(), second]).unwrap();
    assert_eq!(merged.parameters, first.parameters);
}

#[test]
fn single_tensor_concat_is_zero_copy() {
    let only = sample("t", DataType::Fp64, &[3, 2], 5);
    let merged = concat(std::slice::from_ref(&only)).unwrap();
    assert_eq!(merged, only);
    assert_eq!(merged.data().as_ptr(), only.data().as_ptr());
}

#[test]
fn concat_then_split_is_identity_for_many_sizes() {
    for datatype in [DataType::Uint8, DataType::Bytes, DataType::Fp64] {
        let rows = [0usize, 1, 5, 0, 2, 7];
        let parts: Vec<Tensor> = rows
            .iter()
            .enumerate()
            .map(|(i, &n)| sample("x", datatype, &[n, 3], u8::try_from(i).unwrap()))
            .collect();
        let merged = concat(&parts).unwrap();
        assert_eq!(merged.rows(), 15);
        assert_eq!(split(&merged, &rows).unwrap(), parts);
        // A different split of the same rows.
        let pieces = split(&merged, &[15]).unwrap();
        assert_eq!(pieces, vec![merged.clone()]);
        let again = concat(&split(&merged, &[3, 3, 3, 3, 3]).unwrap()).unwrap();
        assert_eq!(again, merged);
    }
}

#[test]
fn incompatible_tensors_are_rejected() {
    let base = sample("x", DataType::Int32, &[2, 3], 0);
    let others = [
        ("trailing dims", sample("x", DataType::Int32, &[2, 4], 0)),
        ("rank", sample("x", DataType::Int32, &[2, 3, 1], 0)),
        ("lower rank", sample("x", DataType::Int32, &[6], 0)),
        ("datatype", sample("x", DataType::Uint32, &[2, 3], 0)),
        ("name", sample("y", DataType::Int32, &[2, 3], 0)),
        ("scalar", sample("x", DataType::Int32, &[], 0)),
    ];
    for (what, other) in others {
        let error = concat(&[base.clone(), other.clone()]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{what}");
        assert!(
            error
                .message()
                .contains("name, datatype and trailing dimensions must agree"),
            "{what}: {}",
            error.message()
        );
        // Also when the odd one is later in the list.
        assert!(
            concat(&[base.clone(), base.clone(), other]).is_err(),
            "{what}"
        );
    }
}

#[test]
fn scalars_are_rejected() {
    let scalar = sample("s", DataType::Fp32, &[], 0);
    for parts in [vec![scalar.clone()], vec![scalar.clone(), scalar.clone()]] {
        let error = concat(&parts).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest);
        assert!(
            error.message().contains("is a scalar"),
            "{}",
            error.message()
        );
    }
    let error = split(&scalar, &[1]).unwrap_err();
    assert!(
        error.message().contains("cannot be split"),
        "{}",
        error.message()
    );
}

#[test]
fn concat_of_nothing_is_an_error() {
    let error = concat(&[]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Internal);
}

#[test]
fn split_with_wrong_row_total_errors() {
    let source = sample("x", DataType::Bytes, &[4, 2], 3);
    for rows in [&[][..], &[1, 2][..], &[4, 1][..], &[5][..], &[0, 0][..]] {
        let error = split(&source, rows).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Internal, "{rows:?}");
        assert!(
            error.message().contains("cannot be split into rows"),
            "{}",
            error.message()
        );
    }
    assert_eq!(split(&source, &[4]).unwrap().len(), 1);
    let empty = sample("x", DataType::Int8, &[0, 2], 0);
    assert_eq!(split(&empty, &[]).unwrap(), Vec::<Tensor>::new());
    assert_eq!(split(&empty, &[0, 0]).unwrap().len(), 2);
}

#[test]
fn split_with_overflowing_row_counts_errors_instead_of_panicking() {
    let source = sample("x", DataType::Int8, &[1, 2], 0);
    let error = split(&source, &[usize::MAX, 2]).unwrap_err();
    assert!(
        error.message().contains("cannot be split"),
        "{}",
        error.message()
    );
}

#[test]
fn split_of_empty_tensor_with_huge_trailing_dims_does_not_panic() {
    // Zero rows make the element count 0, so the shape is valid although the product of the
    // trailing dimensions overflows.
    let source = tensor("x", DataType::Fp32, &[0, 1 << 40, 1 << 40], Bytes::new());
    let pieces = split(&source, &[0, 0]).unwrap();
    assert_eq!(pieces.len(), 2);
    assert_eq!(pieces[0].shape(), source.shape());
}

#[test]
fn concat_with_overflowing_row_total_errors_instead_of_panicking() {
    // Trailing dimension 0: every part holds no elements, whatever its row count.
    let part = tensor("x", DataType::Int8, &[usize::MAX / 2, 0], Bytes::new());
    let error = concat(&[part.clone(), part.clone(), part]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest);
}
