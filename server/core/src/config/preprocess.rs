//! `PREPROCESS`: how a JPEG is decoded before the resize (a request may choose for itself).

/// How a JPEG is decoded before Resize(256) + CenterCrop(224).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preprocess {
    /// At full size: Pillow's `Image.open` + torchvision, byte for byte.
    #[default]
    Exact,
    /// At the reduced size libjpeg-turbo's DCT scaling gives, as Pillow's
    /// `draft('RGB', (2w, 2h))` chooses it (w × h: the Resize(256) target), then the same resize
    /// and crop: Pillow's draft pipeline byte for byte, several times faster on large photos.
    /// Other formats decode as `Exact`.
    Draft,
}

impl Preprocess {
    /// `exact` or `draft`, as the setting, the query parameter and `model_info` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Preprocess::Exact => "exact",
            Preprocess::Draft => "draft",
        }
    }

    /// Reads `exact` or `draft` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "exact" => Some(Preprocess::Exact),
            "draft" => Some(Preprocess::Draft),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Preprocess::Exact, Preprocess::Draft] {
            assert_eq!(Preprocess::parse(p.name()), Some(p));
        }
        assert_eq!(Preprocess::parse("DRAFT"), Some(Preprocess::Draft));
        assert_eq!(Preprocess::parse("fast"), None);
    }
}
