//! The values an install needs, from (in order) the command line and the
//! environment, the installation already there (its config, identity and
//! password file are kept), defaults, and questions on the terminal. With
//! no terminal, what is still missing is an error naming every flag at once,
//! before anything is changed.
//!
//! The token and the password are secrets: read without echo, held in
//! zeroized memory, never logged, and the password is written nowhere but
//! the 0600 password file.

use std::io::{BufRead, IsTerminal, Write};
use std::str::FromStr;

use zeroize::Zeroizing;

use transmissor_plan::PublicKey;
use transmissor_proto::identity::Ibge;
use transmissor_proto::token::Token;

use super::{InstallArgs, InstallError};

/// Environment variable holding the database password (instead of a file).
pub const PASSWORD_ENV: &str = "TRANSMISSOR_DB_PASSWORD";

/// Defaults for a new config.
pub const DEFAULT_DB_HOST: &str = "localhost";
pub const DEFAULT_DB_PORT: u16 = 5432;
pub const DEFAULT_DB_NAME: &str = "esus";
pub const DEFAULT_DB_USER: &str = "transmissor_leitura";

/// A value nobody gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Collector,
    PlanKey,
    Token,
    Password,
}

impl Missing {
    fn flag(self) -> &'static str {
        match self {
            Self::Collector => "--collector https://HOST:PORT",
            Self::PlanKey => "--plan-key ed25519:KEY",
            Self::Token => "--token TOKEN (or TRANSMISSOR_ENROLL_TOKEN)",
            Self::Password => "--db-password-file PATH (or TRANSMISSOR_DB_PASSWORD)",
        }
    }
}

pub fn missing_message(missing: &[Missing]) -> String {
    let flags: Vec<&str> = missing.iter().map(|m| m.flag()).collect();
    format!(
        "missing {}: give them on the command line (there is no terminal to ask on)",
        flags.join(", ")
    )
}

/// The config values to set; `None` leaves the existing config's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigValues {
    pub collector: Option<String>,
    pub db_host: Option<String>,
    pub db_port: Option<u16>,
    pub db_name: Option<String>,
    pub db_user: Option<String>,
    pub plan_keys: Option<Vec<PublicKey>>,
    pub ibge: Option<Ibge>,
}

/// Everything gathered.
pub struct Gathered {
    pub config: ConfigValues,
    /// Present only when an enrollment will happen.
    pub token: Option<(Token, Zeroizing<String>)>,
    /// A new password to write.
    pub password: Option<Zeroizing<String>>,
}

/// What is installed already.
#[derive(Debug, Clone, Copy, Default)]
pub struct Existing {
    pub config: bool,
    pub identity: bool,
    pub password: bool,
}

/// Asking on the terminal.
pub trait Ask {
    fn line(&mut self, question: &str, default: Option<&str>) -> std::io::Result<String>;
    fn secret(&mut self, question: &str) -> std::io::Result<String>;
}

/// Questions on the controlling terminal (answers of secrets not echoed).
pub struct Terminal;

impl Terminal {
    /// `Some` when stdin is a terminal.
    pub fn attached() -> Option<Self> {
        std::io::stdin().is_terminal().then_some(Self)
    }
}

impl Ask for Terminal {
    fn line(&mut self, question: &str, default: Option<&str>) -> std::io::Result<String> {
        let mut err = std::io::stderr();
        match default {
            Some(d) => write!(err, "{question} [{d}]: ")?,
            None => write!(err, "{question}: ")?,
        }
        err.flush()?;
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        let s = s.trim();
        Ok(match default {
            Some(d) if s.is_empty() => d.to_string(),
            _ => s.to_string(),
        })
    }

    fn secret(&mut self, question: &str) -> std::io::Result<String> {
        rpassword::prompt_password(format!("{question}: "))
    }
}

fn input(what: &str) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |e| InstallError::Input(format!("reading {what}: {e}"))
}

/// Gathers what `args` and `existing` leave open, asking on `ask` when given.
pub fn gather(
    args: &InstallArgs,
    existing: Existing,
    mut ask: Option<&mut dyn Ask>,
) -> Result<Gathered, InstallError> {
    let mut missing = Vec::new();
    let mut c = ConfigValues {
        collector: args.collector.clone(),
        db_host: args.db_host.clone(),
        db_port: args.db_port,
        db_name: args.db_name.clone(),
        db_user: args.db_user.clone(),
        plan_keys: (!args.plan_keys.is_empty()).then(|| args.plan_keys.clone()),
        ibge: args.ibge,
    };
    if !existing.config {
        if c.collector.is_none() {
            match ask.as_deref_mut() {
                Some(a) => {
                    c.collector = Some(
                        a.line(
                            "Endereço do coletor / collector address (https://HOST:PORT)",
                            None,
                        )
                        .map_err(input("the collector address"))?,
                    )
                }
                None => missing.push(Missing::Collector),
            }
        }
        let text = |ask: &mut Option<&mut dyn Ask>,
                    v: &mut Option<String>,
                    q: &str,
                    d: &str|
         -> Result<(), InstallError> {
            if v.is_none() {
                *v = Some(match ask.as_deref_mut() {
                    Some(a) => a.line(q, Some(d)).map_err(input(q))?,
                    None => d.to_string(),
                });
            }
            Ok(())
        };
        text(
            &mut ask,
            &mut c.db_host,
            "Servidor do banco do PEC / PEC database host",
            DEFAULT_DB_HOST,
        )?;
        if c.db_port.is_none() {
            c.db_port = Some(match ask.as_deref_mut() {
                Some(a) => {
                    let p = a
                        .line("Porta / port", Some(&DEFAULT_DB_PORT.to_string()))
                        .map_err(input("the port"))?;
                    p.parse()
                        .map_err(|_| InstallError::Input(format!("{p:?} is not a port")))?
                }
                None => DEFAULT_DB_PORT,
            });
        }
        text(
            &mut ask,
            &mut c.db_name,
            "Nome do banco / database name",
            DEFAULT_DB_NAME,
        )?;
        text(
            &mut ask,
            &mut c.db_user,
            "Usuário somente leitura / read-only role",
            DEFAULT_DB_USER,
        )?;
        if c.plan_keys.is_none() {
            match ask.as_deref_mut() {
                Some(a) => {
                    let line = a
                        .line(
                            "Chave pública dos planos / plan public key (ed25519:…)",
                            None,
                        )
                        .map_err(input("the plan key"))?;
                    let keys = line
                        .split([',', ' '])
                        .filter(|s| !s.is_empty())
                        .map(PublicKey::from_str)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| InstallError::Input(e.to_string()))?;
                    if keys.is_empty() {
                        return Err(InstallError::Input("no plan key given".into()));
                    }
                    c.plan_keys = Some(keys);
                }
                None => missing.push(Missing::PlanKey),
            }
        }
    }

    let needs_token = !existing.identity || args.force_enroll;
    let mut token = args
        .token
        .as_deref()
        .map(|t| Zeroizing::new(t.trim().to_string()));
    if needs_token && token.is_none() {
        match ask.as_deref_mut() {
            Some(a) => {
                token = Some(Zeroizing::new(
                    a.secret("Token de inscrição / enrollment token")
                        .map_err(input("the token"))?
                        .trim()
                        .to_string(),
                ))
            }
            None => missing.push(Missing::Token),
        }
    }

    let mut password = match (&args.db_password_file, std::env::var(PASSWORD_ENV)) {
        (Some(path), _) => {
            let text =
                Zeroizing::new(std::fs::read_to_string(path).map_err(InstallError::io(path))?);
            Some(Zeroizing::new(
                text.trim_end_matches(['\r', '\n']).to_string(),
            ))
        }
        (None, Ok(p)) => Some(Zeroizing::new(p)),
        (None, Err(_)) => None,
    };
    if password.is_none() && !existing.password {
        match ask {
            Some(a) => {
                password = Some(Zeroizing::new(
                    a.secret("Senha do usuário do banco / database role's password")
                        .map_err(input("the password"))?,
                ))
            }
            None => missing.push(Missing::Password),
        }
    }
    if !missing.is_empty() {
        return Err(InstallError::Missing(missing));
    }
    if password.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(InstallError::Input("the database password is empty".into()));
    }

    let token = match token {
        Some(text) if needs_token => {
            let t: Token = text
                .parse()
                .map_err(|e| InstallError::Input(format!("enrollment token: {e}")))?;
            if let Some(ibge) = c.ibge
                && ibge != t.ibge
            {
                return Err(InstallError::Input(format!(
                    "--ibge {ibge} is not the token's municipality ({})",
                    t.ibge
                )));
            }
            c.ibge.get_or_insert(t.ibge);
            Some((t, text))
        }
        _ => None,
    };
    Ok(Gathered {
        config: c,
        token,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstallArgs,
    }

    fn args(a: &[&str]) -> InstallArgs {
        Cli::parse_from(std::iter::once("install").chain(a.iter().copied())).args
    }

    struct Scripted(Vec<String>);

    impl Ask for Scripted {
        fn line(&mut self, _: &str, default: Option<&str>) -> std::io::Result<String> {
            let a = self.0.remove(0);
            Ok(if a.is_empty() {
                default.unwrap_or_default().to_string()
            } else {
                a
            })
        }
        fn secret(&mut self, q: &str) -> std::io::Result<String> {
            self.line(q, None)
        }
    }

    fn key() -> String {
        PublicKey::from(&transmissor_plan::SigningKey::from_bytes(&[7; 32])).to_string()
    }

    fn token() -> String {
        Token::generate("3550308".parse().unwrap(), [1; 32]).to_string()
    }

    #[test]
    fn without_a_terminal_every_missing_flag_is_named() {
        let e = gather(&args(&[]), Existing::default(), None)
            .err()
            .unwrap()
            .to_string();
        for flag in ["--collector", "--plan-key", "--token", "--db-password-file"] {
            assert!(e.contains(flag), "{e}");
        }
        // An installation already there needs nothing.
        let all = Existing {
            config: true,
            identity: true,
            password: true,
        };
        let g = gather(&args(&[]), all, None).unwrap();
        assert_eq!(g.config, ConfigValues::default());
        assert!(g.token.is_none() && g.password.is_none());
        // A token given to an enrolled agent is not used.
        let t = token();
        let g = gather(&args(&["--token", &t]), all, None).unwrap();
        assert!(g.token.is_none());
    }

    #[test]
    fn questions_fill_in_and_defaults_apply() {
        let (t, k) = (token(), key());
        // collector, host, port, database, role, plan key, token, password
        let answers = ["https://c.example:7443", "", "", "", "", &k, &t, "pw"];
        let mut ask = Scripted(answers.map(String::from).to_vec());
        let g = gather(&args(&[]), Existing::default(), Some(&mut ask)).unwrap();
        assert_eq!(
            g.config.collector.as_deref(),
            Some("https://c.example:7443")
        );
        assert_eq!(g.config.db_host.as_deref(), Some(DEFAULT_DB_HOST));
        assert_eq!(g.config.db_port, Some(DEFAULT_DB_PORT));
        assert_eq!(g.config.db_user.as_deref(), Some(DEFAULT_DB_USER));
        assert_eq!(g.config.plan_keys.as_ref().unwrap().len(), 1);
        assert_eq!(g.config.ibge.unwrap().as_str(), "3550308");
        assert_eq!(g.password.as_deref().map(String::as_str), Some("pw"));
        assert!(g.token.is_some());
    }

    #[test]
    fn the_token_and_ibge_must_agree() {
        let t = token();
        let e = gather(
            &args(&[
                "--collector",
                "https://c:1",
                "--plan-key",
                &key(),
                "--token",
                &t,
                "--ibge",
                "2304400",
            ]),
            Existing {
                password: true,
                ..Default::default()
            },
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("2304400") && e.contains("3550308"), "{e}");
        let e = gather(
            &args(&["--token", "txe1.garbage"]),
            Existing {
                config: true,
                password: true,
                ..Default::default()
            },
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.starts_with("enrollment token:"), "{e}");
        assert!(!e.contains("garbage"), "{e}");
    }
}
