//! The ops CLI: subcommands of the local runner's binary for the person on call
//! (`cargo run -p local -- <command>`, `--help` lists them). Each works on the store and
//! queue the configuration names, as the runner does: the embedded ones under DATA_DIR
//! by default (stop the runner first: its database is one process's at a time), DynamoDB
//! and SQS with `STORE_BACKEND=dynamodb` and `QUEUE_BACKEND=sqs` (`TABLE_NAME`,
//! `WEBHOOK_QUEUE_URL`, `WEBHOOK_DLQ_URL`; credentials, region and `AWS_ENDPOINT_URL` as
//! the AWS SDK finds them).
//!
//! What a command reports goes to stdout, logs to stderr. Exit codes: 0 done, 1 failed
//! (why, on stderr), 2 bad arguments (clap's usage error).

mod dead_letters;
mod purge;
mod redrive;
mod sellers;

use std::ffi::OsString;
use std::io::Write;

use clap::{Arg, ArgMatches, value_parser};
use shared::config::Config;

/// What the command line asks the binary to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// No subcommand: run the whole system.
    Serve,
    Ops(Op),
}

/// An operations command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Queues,
    DlqList { limit: usize },
    Redrive { id: Option<String> },
    PurgeExpired,
    Grant { seller_id: u64 },
    RevokeSessions { seller_id: u64 },
}

fn command_line() -> clap::Command {
    let seller = || {
        Arg::new("seller_id")
            .value_name("SELLER_ID")
            .help("The seller's Mercado Livre user id")
            .required(true)
            .value_parser(value_parser!(u64))
    };
    clap::Command::new("local")
        .about(
            "Runs every sellerhub function on 127.0.0.1; with a command, an operations tool \
             on the configured store and queue (embedded, or DynamoDB/SQS)",
        )
        .subcommand(clap::Command::new("queues").about("The webhook queue's depths and verdict"))
        .subcommand(
            clap::Command::new("dlq")
                .about("The webhook dead-letter queue")
                .subcommand_required(true)
                .subcommand(
                    clap::Command::new("list")
                        .about("Each dead letter: its envelope's summary and its last error")
                        .arg(
                            Arg::new("limit")
                                .long("limit")
                                .value_name("N")
                                .help("Lists at most this many")
                                .default_value("100")
                                .value_parser(value_parser!(u32).range(1..)),
                        ),
                ),
        )
        .subcommand(
            clap::Command::new("redrive")
                .about("Moves dead letters back to the webhook queue (all, or one)")
                .arg(
                    Arg::new("id")
                        .long("id")
                        .value_name("MESSAGE_ID")
                        .help("Only this dead letter (its id as `dlq list` shows it)"),
                ),
        )
        .subcommand(clap::Command::new("purge-expired").about(
            "Deletes every expired item DynamoDB's TTL has not deleted yet, and events \
                 older than their retention, walking the whole table",
        ))
        .subcommand(
            clap::Command::new("grant")
                .about("A seller's tenant, Mercado Livre grant status and live sessions")
                .arg(seller()),
        )
        .subcommand(
            clap::Command::new("revoke-sessions")
                .about("Ends every session of a seller (their tokens are revoked)")
                .arg(seller()),
        )
}

impl Invocation {
    /// The process's arguments; a bad one ends the process with a usage error and exit
    /// code 2 (`--help` with 0).
    pub fn from_args() -> Self {
        Self::from(command_line().get_matches())
    }

    /// `args` (the program name first), or clap's error.
    pub fn parse<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        command_line().try_get_matches_from(args).map(Self::from)
    }
}

impl From<ArgMatches> for Invocation {
    fn from(matches: ArgMatches) -> Self {
        let seller_id = |args: &ArgMatches| args.get_one::<u64>("seller_id").copied().unwrap_or(0);
        let op = match matches.subcommand() {
            None => return Invocation::Serve,
            Some(("queues", _)) => Op::Queues,
            Some(("dlq", dlq)) => {
                let limit = dlq
                    .subcommand_matches("list")
                    .and_then(|list| list.get_one::<u32>("limit"))
                    .copied()
                    .unwrap_or(100);
                Op::DlqList {
                    limit: usize::try_from(limit).unwrap_or(usize::MAX),
                }
            }
            Some(("redrive", args)) => Op::Redrive {
                id: args.get_one::<String>("id").cloned(),
            },
            Some(("purge-expired", _)) => Op::PurgeExpired,
            Some(("grant", args)) => Op::Grant {
                seller_id: seller_id(args),
            },
            Some(("revoke-sessions", args)) => Op::RevokeSessions {
                seller_id: seller_id(args),
            },
            Some((other, _)) => unreachable!("clap accepted an unknown command {other}"),
        };
        Invocation::Ops(op)
    }
}

impl Op {
    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Queues => "queues",
            Op::DlqList { .. } => "dlq list",
            Op::Redrive { .. } => "redrive",
            Op::PurgeExpired => "purge-expired",
            Op::Grant { .. } => "grant",
            Op::RevokeSessions { .. } => "revoke-sessions",
        }
    }
}

pub type OpsResult = Result<(), Box<dyn std::error::Error>>;

/// Runs `op` against what `config` names, reporting to `out`.
pub async fn run(op: &Op, config: &Config, out: &mut impl Write) -> OpsResult {
    match op {
        Op::Queues => dead_letters::queues(config, out).await,
        Op::DlqList { limit } => dead_letters::list(config, *limit, out).await,
        Op::Redrive { id: None } => redrive::all(config, out).await,
        Op::Redrive { id: Some(id) } => redrive::one(config, id, out).await,
        Op::PurgeExpired => purge::purge_expired(config, out).await,
        Op::Grant { seller_id } => sellers::grant(config, *seller_id, out).await,
        Op::RevokeSessions { seller_id } => sellers::revoke_sessions(config, *seller_id, out).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, clap::Error> {
        Invocation::parse(std::iter::once("local").chain(args.iter().copied()))
    }

    #[test]
    fn every_command_parses_with_its_arguments() {
        let cases = [
            (vec![], Invocation::Serve),
            (vec!["queues"], Invocation::Ops(Op::Queues)),
            (
                vec!["dlq", "list"],
                Invocation::Ops(Op::DlqList { limit: 100 }),
            ),
            (
                vec!["dlq", "list", "--limit", "7"],
                Invocation::Ops(Op::DlqList { limit: 7 }),
            ),
            (vec!["redrive"], Invocation::Ops(Op::Redrive { id: None })),
            (
                vec!["redrive", "--id", "m-1"],
                Invocation::Ops(Op::Redrive {
                    id: Some("m-1".into()),
                }),
            ),
            (vec!["purge-expired"], Invocation::Ops(Op::PurgeExpired)),
            (
                vec!["grant", "468424240"],
                Invocation::Ops(Op::Grant {
                    seller_id: 468_424_240,
                }),
            ),
            (
                vec!["revoke-sessions", "7"],
                Invocation::Ops(Op::RevokeSessions { seller_id: 7 }),
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(parse(&args).unwrap(), expected, "{args:?}");
        }
    }

    #[test]
    fn bad_arguments_are_usage_errors_with_exit_code_2() {
        for args in [
            vec!["nonsense"],
            vec!["dlq"],
            vec!["dlq", "peek"],
            vec!["dlq", "list", "--limit", "0"],
            vec!["redrive", "--id"],
            vec!["redrive", "extra"],
            vec!["grant"],
            vec!["grant", "not-a-number"],
            vec!["revoke-sessions", "-1"],
            vec!["queues", "--verbose"],
        ] {
            let error = parse(&args).expect_err(&format!("{args:?} is refused"));
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
            assert_ne!(error.kind(), ErrorKind::DisplayHelp);
        }
    }
}
