//! `train`: the anchorage command line.

mod allocator;
mod backend;
mod cli;
mod cuda_headers;
mod report;
mod signals;

use clap::Parser;

fn main() -> std::process::ExitCode {
    allocator::tune();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // burn-collective prints its whole configuration at `info` for every replica of
                // every run; its warnings and errors still show.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,burn_collective=warn")),
        )
        .with_writer(std::io::stderr)
        // Plain text when the log is piped or redirected, or when NO_COLOR is set.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Pretrain(args) => cli::stage::run(anchorage_train::Stage::Pretrain, args),
        cli::Command::Ift(args) => cli::stage::run(anchorage_train::Stage::Ift, args),
        cli::Command::Inspect(cmd) => cli::inspect::run(cmd),
        cli::Command::Data(cmd) => cli::data::run(cmd),
        cli::Command::Export(args) => cli::export::run(args),
        cli::Command::Bench(cmd) => cli::bench::run(cmd),
        cli::Command::Eval(cmd) => cli::eval::run(cmd),
        cli::Command::Generate(args) => cli::generate::run(args),
        cli::Command::Demo(args) => cli::demo::run(args),
        cli::Command::Compare(args) => cli::compare::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", report::error_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
