//! The `offline-signer` binary: parses the command line and hands over to the library.

fn main() {
    println!("offline-signer: nothing here yet");
}
