//! The language the checklist speaks: Portuguese when the system's locale
//! is Portuguese (`pt_BR.UTF-8`, `pt-BR`, `pt`), English otherwise, unless
//! `--lang` says.

use std::str::FromStr;

/// A language of the checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Pt,
    En,
}

impl Lang {
    /// From a locale name as the system gives it (`pt_BR.UTF-8`, `pt-BR`,
    /// `en_US`, `C`).
    pub fn from_locale(locale: &str) -> Self {
        let l = locale.trim().to_ascii_lowercase();
        if l == "pt" || l.starts_with("pt_") || l.starts_with("pt-") || l.starts_with("pt.") {
            Self::Pt
        } else {
            Self::En
        }
    }

    /// The system's: `LC_ALL`, `LC_MESSAGES`, `LANG` on Unix, the user's
    /// locale on Windows (`sys-locale`).
    pub fn detect() -> Self {
        sys_locale::get_locale().map_or(Self::En, |l| Self::from_locale(&l))
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Pt => "pt",
            Self::En => "en",
        }
    }

    /// Picks the text of this language.
    pub fn pick<T>(self, pt: T, en: T) -> T {
        match self {
            Self::Pt => pt,
            Self::En => en,
        }
    }
}

/// `--lang`: `pt`, `pt-BR`, `en`, …
#[derive(Debug, thiserror::Error)]
#[error("unknown language {0:?}: use pt or en")]
pub struct UnknownLang(String);

impl FromStr for Lang {
    type Err = UnknownLang;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.trim().to_ascii_lowercase();
        if l.starts_with("pt") {
            Ok(Self::Pt)
        } else if l.starts_with("en") {
            Ok(Self::En)
        } else {
            Err(UnknownLang(s.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Lang;

    #[test]
    fn locales() {
        for pt in ["pt_BR.UTF-8", "pt-BR", "pt", "PT_br", "pt_PT"] {
            assert_eq!(Lang::from_locale(pt), Lang::Pt, "{pt}");
        }
        for en in ["C", "C.UTF-8", "en_US.UTF-8", "POSIX", "", "ptx"] {
            assert_eq!(Lang::from_locale(en), Lang::En, "{en}");
        }
        assert_eq!("pt-BR".parse::<Lang>().unwrap(), Lang::Pt);
        assert_eq!("en".parse::<Lang>().unwrap(), Lang::En);
        assert!("fr".parse::<Lang>().is_err());
    }
}
