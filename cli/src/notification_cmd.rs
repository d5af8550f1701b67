//! `ami-warden notification render --as email|slack|chat FILE`: what a notification looks like
//! to people. FILE holds structured payloads (as SQS, Lambda or HTTPS subscribers of the topic
//! receive them), one JSON document per line; each is printed as the email body the mailbox
//! gets, as the Block Kit message the slack-notifier posts, or as the custom notification the
//! chat topic carries to Amazon Q Developer in chat applications, built by the same code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use warden::notify::{chat, slack, Payload, PAYLOAD_VERSION};

#[derive(Debug, Subcommand)]
pub enum NotificationCommand {
    /// Print payloads as the email body, the Slack message or the chat message they become.
    Render(RenderArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Medium {
    Email,
    Slack,
    /// The custom notification the chat topic carries (Amazon Q Developer in chat applications).
    Chat,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// How to render.
    #[arg(long = "as", value_enum)]
    medium: Medium,
    /// A file of payloads, one JSON document per line (`-` for stdin).
    file: PathBuf,
}

pub fn run(command: NotificationCommand) -> Result<ExitCode> {
    let NotificationCommand::Render(args) = command;
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let payload: Payload = serde_json::from_str(line)
            .with_context(|| format!("line {}: not an AMI Warden payload", n + 1))?;
        if payload.version != PAYLOAD_VERSION {
            bail!("line {}: payload version {} is not {PAYLOAD_VERSION}", n + 1, payload.version);
        }
        match args.medium {
            Medium::Email => {
                println!(
                    "Subject: {}",
                    warden::notify::sns_subject(
                        &payload.notification.subject,
                        payload.notification.severity
                    )
                );
                println!("{}", payload.notification.email_body());
            }
            Medium::Slack => println!(
                "{}",
                serde_json::to_string_pretty(&slack::message(&payload.notification))?
            ),
            Medium::Chat => {
                println!("{}", serde_json::to_string_pretty(&chat::message(&payload.notification))?)
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
