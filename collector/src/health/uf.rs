//! Brazil's 27 federative units: the two-letter code from an IBGE
//! municipality code (its first two digits) and each unit's usual time zone.

use chrono_tz::Tz;

/// `(IBGE prefix, UF, time zone of most of its municipalities)`.
const UFS: [(&str, &str, Tz); 27] = [
    ("11", "RO", Tz::America__Porto_Velho),
    ("12", "AC", Tz::America__Rio_Branco),
    ("13", "AM", Tz::America__Manaus),
    ("14", "RR", Tz::America__Boa_Vista),
    ("15", "PA", Tz::America__Belem),
    ("16", "AP", Tz::America__Belem),
    ("17", "TO", Tz::America__Araguaina),
    ("21", "MA", Tz::America__Fortaleza),
    ("22", "PI", Tz::America__Fortaleza),
    ("23", "CE", Tz::America__Fortaleza),
    ("24", "RN", Tz::America__Fortaleza),
    ("25", "PB", Tz::America__Fortaleza),
    ("26", "PE", Tz::America__Recife),
    ("27", "AL", Tz::America__Maceio),
    ("28", "SE", Tz::America__Maceio),
    ("29", "BA", Tz::America__Bahia),
    ("31", "MG", Tz::America__Sao_Paulo),
    ("32", "ES", Tz::America__Sao_Paulo),
    ("33", "RJ", Tz::America__Sao_Paulo),
    ("35", "SP", Tz::America__Sao_Paulo),
    ("41", "PR", Tz::America__Sao_Paulo),
    ("42", "SC", Tz::America__Sao_Paulo),
    ("43", "RS", Tz::America__Sao_Paulo),
    ("50", "MS", Tz::America__Campo_Grande),
    ("51", "MT", Tz::America__Cuiaba),
    ("52", "GO", Tz::America__Sao_Paulo),
    ("53", "DF", Tz::America__Sao_Paulo),
];

/// Fernando de Noronha (PE) keeps its own time.
const NORONHA: &str = "2605459";

/// Every UF, in IBGE order.
pub fn all() -> impl Iterator<Item = &'static str> {
    UFS.iter().map(|(_, uf, _)| *uf)
}

/// The UF of an IBGE municipality code (`"??"` for an unknown prefix).
pub fn of(ibge: &str) -> &'static str {
    UFS.iter()
        .find(|(prefix, _, _)| ibge.starts_with(prefix))
        .map_or("??", |(_, uf, _)| *uf)
}

/// The municipality's time zone: `explicit` when set (the
/// `municipalities.timezone` column), else its UF's.
pub fn time_zone(ibge: &str, explicit: Option<Tz>) -> Tz {
    if let Some(tz) = explicit {
        return tz;
    }
    if ibge == NORONHA {
        return Tz::America__Noronha;
    }
    UFS.iter()
        .find(|(prefix, _, _)| ibge.starts_with(prefix))
        .map_or(Tz::America__Sao_Paulo, |(_, _, tz)| *tz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uf_and_zone_from_the_code() {
        assert_eq!(of("3550308"), "SP");
        assert_eq!(of("1302603"), "AM");
        assert_eq!(of("9999999"), "??");
        assert_eq!(time_zone("1302603", None), Tz::America__Manaus);
        assert_eq!(time_zone("2605459", None), Tz::America__Noronha);
        assert_eq!(
            time_zone("3550308", Some(Tz::America__Manaus)),
            Tz::America__Manaus
        );
        assert_eq!(all().count(), 27);
    }
}
