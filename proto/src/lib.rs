//! Wire contract shared by `transmissor-agent` and `transmissor-collector`.
//!
//! | module       | what it holds                                                        |
//! |--------------|----------------------------------------------------------------------|
//! | [`pb`]       | gRPC messages and services generated from `transmissor/v1/*.proto`   |
//! | [`batch`]    | compressing a batch of COPY rows, and decompressing it under caps    |
//! | [`copy_binary`] | the COPY binary framing: header, trailer, one tuple's structure   |
//! | [`checksum`] | CRC-32C of a batch and the digest of a whole transmission            |
//! | [`identity`] | IBGE municipality codes and the agent identity URI in certificates   |
//! | [`logging`]  | tracing set-up of both binaries (text or JSON, `TRANSMISSOR_LOG`)    |
//! | [`limits`]   | message and batch size limits both sides agree on                     |
//! | [`names`]    | validation and quoting of SQL identifiers carried on the wire        |
//! | [`redact`]   | PostgreSQL errors without data values (personal data), by SQLSTATE   |
//! | [`secret`]   | passwords from owner-only files or the environment                   |
//! | [`token`]    | one-time enrollment tokens and CA public-key pins                    |
//! | [`terminal`] | agent-supplied text made safe to print on an operator's terminal     |
//! | [`shutdown`] | SIGINT/SIGTERM → cancellation token (both binaries)                  |

pub mod batch;
pub mod checksum;
pub mod copy_binary;
pub mod identity;
pub mod limits;
pub mod logging;
pub mod names;
pub mod redact;
pub mod secret;
pub mod shutdown;
pub mod terminal;
pub mod token;

/// Generated protobuf and gRPC code (package `transmissor.v1`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
pub mod pb {
    tonic::include_proto!("transmissor.v1");
}
