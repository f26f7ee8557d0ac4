//! Compile errors for every mistake a user can make in `#[task]` and `#[flow]`,
//! each checked against its `.stderr` file.
//!
//! The `.stderr` files are blessed under the README's test command (`--all-features`):
//! rustc's lists of "other types that implement" a trait name types by shorter or
//! longer paths depending on which crates are built, so they differ slightly without
//! the cloud features.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
