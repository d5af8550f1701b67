//! `warden-scenario seed OUT_DIR [TAG]`: plays the seed story on the local stack and writes the
//! events it produced to OUT_DIR as `NN-label.json`, one event per file; prints the story's
//! image ids as shell assignments (`GOLDEN=ami-… GOLDEN_REGION=…`) on stdout.
//! Demo and test support only; it refuses to run against anything but loopback.

use anyhow::{bail, Context, Result};
use warden_testkit::cloudtrail::Trail;
use warden_testkit::{stack, story};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, tag) = match args.as_slice() {
        [cmd, out] if cmd == "seed" => (out.clone(), "demo".to_owned()),
        [cmd, out, tag] if cmd == "seed" => (out.clone(), tag.clone()),
        _ => bail!("usage: warden-scenario seed OUT_DIR [TAG]"),
    };
    let sdk = stack::sdk_config().await;
    let trail = Trail::new("123456789012", "golden-image-pipeline");
    let played = story::play_seed_story(&sdk, &trail, &tag).await?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {out}"))?;
    for (i, (label, event)) in played.events.iter().enumerate() {
        let path = format!("{out}/{:02}-{label}.json", i + 1);
        std::fs::write(&path, serde_json::to_vec_pretty(event)?).with_context(|| format!("writing {path}"))?;
        eprintln!("  wrote {path}");
    }
    println!("GOLDEN={} GOLDEN_REGION={}", played.golden.image_id, played.golden.region);
    for g in &played.generations {
        println!("{}={} {}_REGION={}", g.label.to_uppercase(), g.image_id, g.label.to_uppercase(), g.region);
    }
    println!("INSTANCE={}", played.instance_id);
    Ok(())
}
