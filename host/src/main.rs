//! The `sluice` binary: parse the command line, set up logging, hand over to
//! the library.

use std::process::ExitCode;

use clap::Parser as _;
use sluice::cli::{Cli, Command, PluginCommand};
use sluice::commands::{self, Usage};
use sluice::plugin::{Runtime, RuntimeOptions};

/// mimalloc instead of glibc's allocator: the data path allocates a few
/// small buffers per record (its key, value, row), and under glibc those
/// mallocs and frees were a quarter of a SQL pipeline's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.is::<Usage>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn runtime(cli: &Cli) -> anyhow::Result<Runtime> {
    let mut opts = RuntimeOptions::default();
    if let Some(dir) = &cli.cache_dir {
        opts.cache_dir = Some(dir.clone());
    }
    Runtime::new(opts)
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let rt = runtime(&cli)?;
    match cli.command {
        Command::Plugin(PluginCommand::Run(args)) => commands::plugin::run(&rt, args),
        Command::Plugin(PluginCommand::Inspect { plugin }) => {
            commands::plugin::inspect(&rt, &plugin)
        }
        Command::Plugin(PluginCommand::New(args)) => commands::scaffold::run(args),
        Command::Run { file } => commands::pipeline::run(rt, &file),
        Command::Check { file } => commands::pipeline::check(&rt, &file),
        Command::Produce(args) => commands::produce::run(args),
        Command::Consume(args) => commands::consume::run(args),
        Command::Dlq(cmd) => commands::dlq::run(&rt, cmd),
    }
}
