//! `mr-corpus DIR FILES MIB`: writes FILES deterministic corpus files of about MIB MiB
//! each (`DIR/c-NNN.txt`): multilingual text, long lines, Zipf word frequencies.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: mr-corpus DIR FILES MIB");
        std::process::exit(2);
    }
    let files: usize = args[2].parse().expect("FILES is a number");
    let mib: u64 = args[3].parse().expect("MIB is a number");
    let started = std::time::Instant::now();
    let paths = mr_bench::generate_corpus(std::path::Path::new(&args[1]), files, mib << 20)
        .expect("write the corpus");
    eprintln!("{} files in {:?}", paths.len(), started.elapsed());
}
