//! Prints the OpenAPI document: `cargo run -p voxanne-http --example openapi`.
fn main() {
    match voxanne_http::openapi().to_pretty_json() {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("{e}"),
    }
}
