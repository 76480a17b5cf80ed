//! Numeric casts of V1 tensors to a model's declared datatypes. V1 JSON only knows integers
//! (INT64) and floats (FP64); a V2 backend that declares FP32 or INT32 inputs gets them in its
//! own type. Casts never lose information silently: an integer out of the target's range, or a
//! float with a fraction cast to an integer type, is a 400.

use bytes::Bytes;
use half::{bf16, f16};

use super::{DataType, Tensor};
use crate::error::{Error, Result};

/// One element read from a V1 tensor.
#[derive(Clone, Copy)]
enum Value {
    Int(i64),
    Float(f64),
}

impl Tensor {
    /// This tensor in `target`: unchanged when it already is, otherwise cast element by element
    /// from INT64 or FP64. Other source types (and BOOL / BYTES targets) are not cast.
    pub fn cast(self, target: DataType) -> Result<Self> {
        if self.datatype == target {
            return Ok(self);
        }
        let (Some(size), DataType::Int64 | DataType::Fp64) = (target.element_size(), self.datatype)
        else {
            return Err(Error::bad_request(format!(
                "tensor '{}': cannot cast {} to {}",
                self.name,
                self.datatype.as_str(),
                target.as_str()
            )));
        };
        let mut out = Vec::with_capacity(self.element_count() * size);
        for chunk in self.data.chunks_exact(8) {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(chunk);
            let value = match self.datatype {
                DataType::Int64 => Value::Int(i64::from_le_bytes(raw)),
                _ => Value::Float(f64::from_le_bytes(raw)),
            };
            write(&mut out, value, target)
                .map_err(|e| e.context(format!("tensor '{}'", self.name)))?;
        }
        Ok(Self {
            datatype: target,
            data: Bytes::from(out),
            ..self
        })
    }
}

fn write(out: &mut Vec<u8>, value: Value, target: DataType) -> Result<()> {
    let float = match value {
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
    };
    match target {
        DataType::Fp64 => out.extend_from_slice(&float.to_le_bytes()),
        DataType::Fp32 => out.extend_from_slice(&(float as f32).to_le_bytes()),
        DataType::Fp16 => out.extend_from_slice(&f16::from_f64(float).to_le_bytes()),
        DataType::Bf16 => out.extend_from_slice(&bf16::from_f64(float).to_le_bytes()),
        DataType::Bool => {
            let int = integer(value, target)?;
            if !(0..=1).contains(&int) {
                return Err(out_of_range(value, target));
            }
            out.push(u8::from(int == 1));
        }
        _ => write_int(out, integer(value, target)?, value, target)?,
    }
    Ok(())
}

/// The value as an integer; a float must be integral.
fn integer(value: Value, target: DataType) -> Result<i128> {
    match value {
        Value::Int(i) => Ok(i128::from(i)),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e19 => Ok(f as i128),
        Value::Float(_) => Err(out_of_range(value, target)),
    }
}

fn write_int(out: &mut Vec<u8>, int: i128, value: Value, target: DataType) -> Result<()> {
    macro_rules! put {
        ($ty:ty) => {
            out.extend_from_slice(
                &<$ty>::try_from(int)
                    .map_err(|_| out_of_range(value, target))?
                    .to_le_bytes(),
            )
        };
    }
    match target {
        DataType::Uint8 => put!(u8),
        DataType::Uint16 => put!(u16),
        DataType::Uint32 => put!(u32),
        DataType::Uint64 => put!(u64),
        DataType::Int8 => put!(i8),
        DataType::Int16 => put!(i16),
        DataType::Int32 => put!(i32),
        DataType::Int64 => put!(i64),
        _ => return Err(out_of_range(value, target)),
    }
    Ok(())
}

fn out_of_range(value: Value, target: DataType) -> Error {
    let shown = match value {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
    };
    Error::bad_request(format!("value {shown} does not fit {}", target.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn int64(values: &[i64]) -> Result<Tensor> {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::new(
            "x",
            DataType::Int64,
            vec![values.len()],
            data.into(),
            &Limits::DEFAULT,
        )
    }

    fn fp64(values: &[f64]) -> Result<Tensor> {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::new(
            "x",
            DataType::Fp64,
            vec![values.len()],
            data.into(),
            &Limits::DEFAULT,
        )
    }

    #[test]
    fn casts_v1_numbers_to_declared_types() -> Result<()> {
        let fp32 = fp64(&[1.5, -2.25])?.cast(DataType::Fp32)?;
        assert_eq!(fp32.datatype(), DataType::Fp32);
        assert_eq!(
            &fp32.data()[..],
            [1.5f32.to_le_bytes(), (-2.25f32).to_le_bytes()].concat()
        );
        let int32 = int64(&[7, -8])?.cast(DataType::Int32)?;
        assert_eq!(
            &int32.data()[..],
            [7i32.to_le_bytes(), (-8i32).to_le_bytes()].concat()
        );
        let from_float = fp64(&[3.0])?.cast(DataType::Uint8)?;
        assert_eq!(&from_float.data()[..], [3u8]);
        let half = int64(&[2])?.cast(DataType::Fp16)?;
        assert_eq!(&half.data()[..], f16::from_f32(2.0).to_le_bytes());
        assert_eq!(
            int64(&[1, 0])?.cast(DataType::Bool)?.data().as_ref(),
            [1u8, 0]
        );
        Ok(())
    }

    #[test]
    fn refuses_lossy_casts() -> Result<()> {
        let message = |r: Result<Tensor>| r.err().map(|e| e.message().to_owned());
        assert_eq!(
            message(int64(&[300])?.cast(DataType::Uint8)),
            Some("tensor 'x': value 300 does not fit UINT8".to_owned())
        );
        assert_eq!(
            message(fp64(&[1.5])?.cast(DataType::Int32)),
            Some("tensor 'x': value 1.5 does not fit INT32".to_owned())
        );
        assert!(int64(&[-1])?.cast(DataType::Uint32).is_err());
        assert!(int64(&[2])?.cast(DataType::Bool).is_err());
        assert!(int64(&[1])?.cast(DataType::Bytes).is_err());
        Ok(())
    }
}
