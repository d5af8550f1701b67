//! The seed story, played for real on the local stack's EC2.
//!
//! A golden image is registered; an instance launched from it is imaged (Gen1); Gen1 is copied
//! across two regions for three more generations (Gen2 in the away region, Gen3 back home, Gen4
//! away); Gen2 is deregistered. Every call is a real EC2 call, and each gets the CloudTrail
//! event it would have produced, plus the native AMI state changes. One call that fails for
//! real (copying an image that does not exist) gets its failed-call record too.
//!
//! [`play_seed_story`] plays it all; the demo plays [`play_seed_builds`] (everything before
//! Gen2's deregistration), delivers those events, then [`deregister`]s Gen2, so that the
//! functions meet the deregistration knowing Gen2's snapshots, as they would live.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, InstanceType, VolumeType};
use aws_sdk_ec2::Client;
use serde_json::{json, Value};

use crate::cloudtrail::{items, Trail};

/// The home and away regions of the story.
pub const HOME: &str = "us-east-1";
pub const AWAY: &str = "eu-west-1";

/// An image of the story: where it lives and what it is called.
#[derive(Clone, Debug)]
pub struct StoryImage {
    pub label: &'static str,
    pub region: &'static str,
    pub image_id: String,
}

/// The images and the events the story produced, in the order the calls were made.
#[derive(Debug)]
pub struct SeedStory {
    pub golden: StoryImage,
    pub generations: Vec<StoryImage>,
    pub instance_id: String,
    /// The snapshot the golden image was registered with.
    pub golden_snapshot: String,
    /// `(label, event)`, in call order.
    pub events: Vec<(String, Value)>,
}

pub fn ec2(sdk: &SdkConfig, region: &str) -> Client {
    let conf = aws_sdk_ec2::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_owned()))
        .build();
    Client::from_conf(conf)
}

/// Plays the story. `tag` makes image names unique when the story is played more than once
/// against one stack.
pub async fn play_seed_story(sdk: &SdkConfig, trail: &Trail, tag: &str) -> Result<SeedStory> {
    play_seed_story_in(sdk, trail, tag, HOME, AWAY).await
}

/// The seed story in other regions (a test that reads whole regions gets them to itself).
pub async fn play_seed_story_in(
    sdk: &SdkConfig,
    trail: &Trail,
    tag: &str,
    home_region: &'static str,
    away_region: &'static str,
) -> Result<SeedStory> {
    let mut story = play_seed_builds_in(sdk, trail, tag, home_region, away_region).await?;
    let gen2 = story.generations.get(1).cloned().context("the story has a Gen2")?;
    let deregistered = deregister(sdk, trail, &gen2).await?;
    story.events.extend(deregistered);
    Ok(story)
}

/// The seed story up to, not including, Gen2's deregistration: every image is built (and the
/// failed copy made). The demo delivers these events before it deregisters Gen2 with
/// [`deregister`], as live events would arrive: each image's `available` long before it goes.
pub async fn play_seed_builds(sdk: &SdkConfig, trail: &Trail, tag: &str) -> Result<SeedStory> {
    play_seed_builds_in(sdk, trail, tag, HOME, AWAY).await
}

/// Deregisters `image` for real, keeping its snapshots (`deleteAssociatedSnapshots` false), and
/// returns the events that produces: `deregister-<label>` and `<label>-deregistered`.
pub async fn deregister(
    sdk: &SdkConfig,
    trail: &Trail,
    image: &StoryImage,
) -> Result<Vec<(String, Value)>> {
    ec2(sdk, image.region)
        .deregister_image()
        .image_id(&image.image_id)
        .send()
        .await
        .with_context(|| format!("DeregisterImage {}", image.label))?;
    Ok(vec![
        (
            format!("deregister-{}", image.label),
            trail.api_call(
                image.region,
                "DeregisterImage",
                json!({"imageId": image.image_id, "deleteAssociatedSnapshots": false}),
                json!({"_return": true}),
            ),
        ),
        (
            format!("{}-deregistered", image.label),
            trail.ami_state_change(image.region, &image.image_id, "deregistered"),
        ),
    ])
}

/// The story being played: where, by whom, and the events its calls produced so far.
struct Player<'a> {
    trail: &'a Trail,
    tag: &'a str,
    home_region: &'static str,
    away_region: &'static str,
    home: aws_sdk_ec2::Client,
    away: aws_sdk_ec2::Client,
    events: Vec<(String, Value)>,
}

pub async fn play_seed_builds_in(
    sdk: &SdkConfig,
    trail: &Trail,
    tag: &str,
    home_region: &'static str,
    away_region: &'static str,
) -> Result<SeedStory> {
    let mut player = Player {
        trail,
        tag,
        home_region,
        away_region,
        home: ec2(sdk, home_region),
        away: ec2(sdk, away_region),
        events: Vec::new(),
    };
    let (golden_id, snapshot_id) = player.register_golden().await?;
    let (instance_id, gen1_id) = player.image_instance(&golden_id).await?;
    let generations = player.copy_generations(gen1_id).await?;
    player.fail_a_copy().await;
    Ok(SeedStory {
        golden: StoryImage { label: "golden", region: home_region, image_id: golden_id },
        generations,
        instance_id,
        golden_snapshot: snapshot_id,
        events: player.events,
    })
}

impl Player<'_> {
    /// The golden image: a registered root snapshot. Returns the image and the snapshot.
    async fn register_golden(&mut self) -> Result<(String, String)> {
        let (home, trail, tag, home_region) = (&self.home, self.trail, self.tag, self.home_region);
        let events = &mut self.events;
        let volume = home
            .create_volume()
            .availability_zone(format!("{home_region}a"))
            .size(8)
            .send()
            .await
            .context("CreateVolume")?;
        let volume_id = volume.volume_id().context("CreateVolume returned no id")?;
        let snapshot = home
            .create_snapshot()
            .volume_id(volume_id)
            .description("golden root volume")
            .send()
            .await
            .context("CreateSnapshot")?;
        let snapshot_id =
            snapshot.snapshot_id().context("CreateSnapshot returned no id")?.to_owned();
        let golden_name = format!("golden-base-{tag}");
        let golden_id = home
            .register_image()
            .name(&golden_name)
            .architecture(aws_sdk_ec2::types::ArchitectureValues::X8664)
            .root_device_name("/dev/xvda")
            .virtualization_type("hvm")
            .ena_support(true)
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        EbsBlockDevice::builder()
                            .snapshot_id(&snapshot_id)
                            .volume_size(8)
                            .volume_type(VolumeType::Gp3)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .context("RegisterImage")?
            .image_id()
            .context("RegisterImage returned no id")?
            .to_owned();
        events.push((
        "register-golden".into(),
        trail.api_call(
            home_region,
            "RegisterImage",
            json!({
                "name": golden_name,
                "architecture": "x86_64",
                "rootDeviceName": "/dev/xvda",
                "virtualizationType": "hvm",
                "enaSupport": true,
                "blockDeviceMapping": items(vec![json!({
                    "deviceName": "/dev/xvda",
                    "ebs": {"snapshotId": snapshot_id, "volumeSize": 8, "volumeType": "gp3", "deleteOnTermination": true}
                })])
            }),
            json!({"imageId": golden_id}),
        ),
    ));
        events.push((
            "golden-available".into(),
            trail.ami_state_change(home_region, &golden_id, "available"),
        ));

        Ok((golden_id, snapshot_id))
    }

    /// An instance launched from the golden image, imaged as Gen1. Returns both ids.
    async fn image_instance(&mut self, golden_id: &str) -> Result<(String, String)> {
        let (home, trail, tag, home_region) = (&self.home, self.trail, self.tag, self.home_region);
        let events = &mut self.events;
        let run = home
            .run_instances()
            .image_id(golden_id)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .context("RunInstances")?;
        let instance_id = run
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .context("RunInstances returned no instance")?
            .to_owned();
        let gen1_name = format!("app-{tag}-gen1");
        let gen1_id = home
            .create_image()
            .instance_id(&instance_id)
            .name(&gen1_name)
            .no_reboot(true)
            .send()
            .await
            .context("CreateImage")?
            .image_id()
            .context("CreateImage returned no id")?
            .to_owned();
        events.push((
            "create-gen1".into(),
            trail.api_call(
                home_region,
                "CreateImage",
                json!({"instanceId": instance_id, "name": gen1_name, "noReboot": true}),
                json!({"imageId": gen1_id}),
            ),
        ));
        events.push((
            "gen1-available".into(),
            trail.ami_state_change(home_region, &gen1_id, "available"),
        ));

        Ok((instance_id, gen1_id))
    }

    /// Three copies of Gen1's line, alternating regions: Gen1 to Gen4.
    async fn copy_generations(&mut self, gen1_id: String) -> Result<Vec<StoryImage>> {
        let (home, away, trail, tag) = (&self.home, &self.away, self.trail, self.tag);
        let (home_region, away_region) = (self.home_region, self.away_region);
        let events = &mut self.events;
        let mut generations =
            vec![StoryImage { label: "gen1", region: home_region, image_id: gen1_id }];
        for (n, region) in [(2, away_region), (3, home_region), (4, away_region)] {
            let source = generations.last().cloned().context("a previous generation")?;
            let client = if region == home_region { &home } else { &away };
            let name = format!("app-{tag}-gen{n}");
            let copy_id = client
                .copy_image()
                .source_image_id(&source.image_id)
                .source_region(source.region)
                .name(&name)
                .send()
                .await
                .with_context(|| format!("CopyImage gen{n}"))?
                .image_id()
                .context("CopyImage returned no id")?
                .to_owned();
            events.push((
            format!("copy-gen{n}"),
            trail.api_call(
                region,
                "CopyImage",
                json!({"sourceRegion": source.region, "sourceImageId": source.image_id, "name": name}),
                json!({"imageId": copy_id}),
            ),
        ));
            events.push((
                format!("gen{n}-available"),
                trail.ami_state_change(region, &copy_id, "available"),
            ));
            let label = ["gen1", "gen2", "gen3", "gen4"][n - 1];
            generations.push(StoryImage { label, region, image_id: copy_id });
        }

        Ok(generations)
    }

    /// A copy that fails for real: the source does not exist.
    async fn fail_a_copy(&mut self) {
        let (away, trail, tag) = (&self.away, self.trail, self.tag);
        let (home_region, away_region) = (self.home_region, self.away_region);
        let events = &mut self.events;
        let missing = "ami-0000000000000dead";
        let failed = away
            .copy_image()
            .source_image_id(missing)
            .source_region(home_region)
            .name(format!("app-{tag}-typo"))
            .send()
            .await;
        if let Err(err) = failed {
            let code = aws_sdk_ec2::error::ProvideErrorMetadata::code(&err)
                .unwrap_or("Unknown")
                .to_owned();
            let message = aws_sdk_ec2::error::ProvideErrorMetadata::message(&err)
                .unwrap_or_default()
                .to_owned();
            events.push((
            "copy-missing-failed".into(),
            trail.failed_call(
                away_region,
                "CopyImage",
                json!({"sourceRegion": home_region, "sourceImageId": missing, "name": format!("app-{tag}-typo")}),
                &format!("Client.{code}"),
                &message,
            ),
        ));
        }
    }
}
