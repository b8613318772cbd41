//! `mr-native-wc THREADS OUT FILE...`: the native word count baseline. Counts the words of
//! the files with THREADS threads (same word rule as the `wc` app), writes sorted
//! `word count` lines to OUT and prints the elapsed seconds on stdout.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: mr-native-wc THREADS OUT FILE...");
        std::process::exit(2);
    }
    let started = std::time::Instant::now();
    let threads: usize = args[1].parse().expect("THREADS is a number");
    let files: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();
    let counts = mr_bench::native_word_count(&files, threads, 8 << 20).expect("read inputs");
    let mut out = BufWriter::with_capacity(
        256 << 10,
        std::fs::File::create(&args[2]).expect("create OUT"),
    );
    mr_bench::write_counts(&mut out, &counts).expect("write OUT");
    out.into_inner().expect("flush OUT");
    println!("{:.6}", started.elapsed().as_secs_f64());
    std::io::stdout().flush().ok();
}
