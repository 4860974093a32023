//! What one inference request may hold, for every transport: tensors, parameters, dimensions,
//! and the memory its decoded form takes against its size on the wire. Checked before anything
//! is allocated for the counted items (the gRPC wire scan; JSON shapes).

/// The most dimensions a tensor's shape may have.
pub const MAX_RANK: usize = 8;
/// The most tensors (inputs, requested outputs, raw input contents) one request may name.
pub const MAX_TENSORS: usize = 64;
/// The most parameters one request may carry (its own, its inputs' and its outputs').
pub const MAX_PARAMETERS: usize = 64;
/// A decoded request may take this many times its wire size in memory (plus [`SLACK`]).
pub const EXPANSION: usize = 4;
/// Fixed room above `EXPANSION` × size, for small requests.
pub const SLACK: usize = 64 << 10;
/// What one `bytes` element costs decoded (a `Bytes` handle).
pub const BYTES_ELEMENT_COST: u64 = 32;
/// What one tensor costs decoded (its struct, name, datatype, shape and map).
const TENSOR_COST: u64 = 320;
/// What one parameter costs decoded (key, value, map slot).
const PARAMETER_COST: u64 = 96;

/// Counts of a request as it is read; each method refuses past its limit.
#[derive(Debug, Default)]
pub struct Tally {
    tensors: usize,
    parameters: usize,
    decoded: u64,
}

impl Tally {
    /// One more tensor.
    pub fn tensor(&mut self) -> Result<(), String> {
        self.tensors += 1;
        self.decoded += TENSOR_COST;
        if self.tensors > MAX_TENSORS {
            return Err(format!("the request names more than {MAX_TENSORS} tensors"));
        }
        Ok(())
    }

    /// One more parameter.
    pub fn parameter(&mut self) -> Result<(), String> {
        self.parameters += 1;
        self.decoded += PARAMETER_COST;
        if self.parameters > MAX_PARAMETERS {
            return Err(format!(
                "the request carries more than {MAX_PARAMETERS} parameters"
            ));
        }
        Ok(())
    }

    /// `n` tensor elements of `size` bytes each, decoded.
    pub fn elements(&mut self, n: u64, size: u64) {
        self.decoded = self.decoded.saturating_add(n.saturating_mul(size));
    }

    /// Refuses a request of `wire` bytes whose decoded form would exceed its allowance.
    pub fn within(&self, wire: usize) -> Result<(), String> {
        let allowed = (wire.saturating_mul(EXPANSION) + SLACK) as u64;
        if self.decoded > allowed {
            return Err(format!(
                "the request would take {} bytes decoded from {wire} bytes, more than {EXPANSION}x its size",
                self.decoded
            ));
        }
        Ok(())
    }
}

/// Refuses a shape of more than [`MAX_RANK`] dimensions.
pub fn rank(dims: u64) -> Result<(), String> {
    if dims > MAX_RANK as u64 {
        return Err(format!(
            "a shape has {dims} dimensions; at most {MAX_RANK} are accepted"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_refuses_one_past_its_limit() {
        let mut t = Tally::default();
        for _ in 0..MAX_TENSORS {
            t.tensor().unwrap();
        }
        assert!(t.tensor().is_err());
        let mut t = Tally::default();
        for _ in 0..MAX_PARAMETERS {
            t.parameter().unwrap();
        }
        assert!(t.parameter().is_err());
        assert!(rank(MAX_RANK as u64).is_ok() && rank(MAX_RANK as u64 + 1).is_err());
    }

    #[test]
    fn the_allowance_grows_with_the_wire_size() {
        let mut t = Tally::default();
        t.elements(1000, 4);
        assert!(t.within(0).is_ok(), "small requests fit the slack");
        t.elements(1 << 20, BYTES_ELEMENT_COST); // a million empty strings: 2 MiB on the wire
        assert!(t.within(2 << 20).is_err());
        assert!(t.within(16 << 20).is_ok());
    }
}
