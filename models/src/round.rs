//! Rounding of measured statistics for the built-in model: [`round_sig`] keeps [`DIGITS`]
//! significant digits, so that a last-bit difference between CPU kernels changes a generated
//! byte more rarely. Shared by the generator ([`crate::generate`]) and its classifier
//! ([`crate::head`]).

/// Significant digits kept of every measured statistic.
pub(crate) const DIGITS: i32 = 4;

/// `x` rounded to `digits` significant decimal digits.
pub(crate) fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let factor = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_sig_keeps_the_leading_digits() {
        assert_eq!(round_sig(123_456.0, 4), 123_500.0);
        assert!((round_sig(0.000_123_456, 4) - 0.000_123_5).abs() < 1e-12);
        assert_eq!(round_sig(0.0, 4), 0.0);
        assert_eq!(round_sig(-2.345_67, 3), -2.35);
    }
}
