//! [`DeprecationEc2`] over the EC2 and Auto Scaling APIs.
//!
//! "In use" is gathered once per region, not once per image: every instance that is not
//! terminated; **every version** of every launch template (not only `$Default`/`$Latest`);
//! every launch configuration; every Auto Scaling group (its launch configuration, launch
//! template version, and mixed-instances overrides); and DescribeImageReferences. All listings
//! are paged explicitly (EC2 and moto both cap unpaged launch-template listings). A failed
//! lookup is recorded in the index, which keeps every image.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_autoscaling::types::{AutoScalingGroup, LaunchTemplateSpecification};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, ImageAttributeName};
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};

use super::ec2::failure;
use super::Clients;
use crate::catalogue::CatalogueError;
use crate::deprecation::protect::{PROTECTED_TAG_KEY, PROTECTED_TAG_VALUE};
use crate::deprecation::usage::{self, ReportState, UsageEntry, UsageReport};
use crate::deprecation::REFERENCE_IDS;
use crate::deprecation::{
    DeprecationEc2, DeregistrationProtection, ImageFacts, InUseIndex, RETIRED_TAG_KEY,
    RETIRED_TAG_VALUE,
};
use crate::event::Grantee;
use crate::ids::{AccountId, ImageId, Region};
use crate::recycle_bin::RetentionRule;

pub struct Ec2Deprecation {
    clients: Clients,
    page_size: i32,
}

impl Ec2Deprecation {
    pub fn new(clients: &Clients) -> Self {
        Self { clients: clients.clone(), page_size: super::ec2::IMAGE_PAGE }
    }

    /// Lists images `items` at a time (5 to 1000), e.g. to exercise paging in tests.
    pub fn with_page_size(mut self, items: i32) -> Self {
        self.page_size = items.clamp(5, 1000);
        self
    }
}

/// A timestamp EC2 gave, `Err` when it gave one that does not parse.
fn time(raw: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    match raw {
        None => Ok(None),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| format!("{t:?}: {e}")),
    }
}

/// The facts of a listed image. An image whose id or timestamps cannot be read is left out
/// (never retired, never stamped), with a warning: an unreadable launch time is no proof that
/// it was never launched.
fn facts(i: &aws_sdk_ec2::types::Image) -> Option<ImageFacts> {
    let image_id = i.image_id().and_then(ImageId::parse)?;
    let (created, deprecation, last_launched) = match (
        time(i.creation_date()),
        time(i.deprecation_time()),
        time(i.last_launched_time()),
    ) {
        (Ok(c), Ok(d), Ok(l)) => (c, d, l),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            tracing::warn!(image = %image_id, error = e, "an image timestamp is unreadable; the image is left alone");
            return None;
        }
    };
    let deregistration_protection = DeregistrationProtection::parse(i.deregistration_protection());
    if let DeregistrationProtection::Unknown(raw) = &deregistration_protection {
        tracing::warn!(image = %image_id, deregistration_protection = raw, "a deregistration protection this version does not know; the image is kept as protected");
    }
    Some(ImageFacts {
        image_id,
        name: i.name().map(str::to_owned),
        owner: i.owner_id().and_then(AccountId::parse),
        created,
        deprecation,
        last_launched,
        state: i.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        tags: i
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
            .collect(),
        snapshots: super::ec2::snapshots_of_image(i),
        root_device_type: i.root_device_type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        deregistration_protection,
    })
}

/// Reads every page of a listing into `$index` with `$each`; a page that fails is recorded
/// as a failure of the lookup (which keeps every image) and ends the listing.
macro_rules! each_page {
    ($pages:expr, $operation:literal, $region:expr, $index:expr, |$page:ident| $each:block) => {{
        let mut pages = $pages;
        while let Some(page) = pages.next().await {
            match page {
                Ok($page) => $each,
                Err(e) => {
                    $index.failures.push(failure($operation, $region, &e).to_string());
                    break;
                }
            }
        }
    }};
}

/// How many DescribeImageReferences requests run at once.
const REFERENCE_CONCURRENCY: usize = 10;

/// A launch template version's image, or the SSM parameter it names.
type LtVersions = HashMap<(String, i64), String>;

/// Each launch template's name, default version and latest version, by its id.
type Templates = HashMap<String, (String, i64, i64)>;

impl Ec2Deprecation {
    async fn instances(&self, region: &Region, index: &mut InUseIndex) {
        let states = ["pending", "running", "shutting-down", "stopping", "stopped"];
        let pages = self
            .clients
            .ec2(region)
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(states.map(String::from).to_vec()))
                    .build(),
            )
            .max_results(1000)
            .into_paginator()
            .send();
        each_page!(pages, "DescribeInstances", region, index, |page| {
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let state = i.state().and_then(|s| s.name()).map(|n| n.as_str()).unwrap_or("?");
                if let (Some(image), Some(id)) = (i.image_id(), i.instance_id()) {
                    index.add(image, format!("instance {id} ({state})"));
                }
            }
        });
    }

    /// Fleets and Spot requests that name an image directly, not through a launch template
    /// (those are covered with every template version): Spot Fleet launch specifications, EC2
    /// Fleet overrides, and Spot Instance requests that can still launch (open, active,
    /// disabled). Deregistering their image would break their next launch.
    async fn fleets(&self, region: &Region, index: &mut InUseIndex) {
        let client = self.clients.ec2(region);
        each_page!(
            client.describe_spot_fleet_requests().max_results(1000).into_paginator().send(),
            "DescribeSpotFleetRequests",
            region,
            index,
            |page| {
                for fleet in page.spot_fleet_request_configs() {
                    let state = fleet.spot_fleet_request_state().map(|s| s.as_str()).unwrap_or("?");
                    if matches!(state, "cancelled" | "cancelled_terminating" | "failed") {
                        continue;
                    }
                    let id = fleet.spot_fleet_request_id().unwrap_or("?");
                    for image in fleet
                        .spot_fleet_request_config()
                        .map(|c| c.launch_specifications())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|l| l.image_id())
                    {
                        index.add(image, format!("Spot Fleet {id} ({state})"));
                    }
                }
            }
        );
        each_page!(
            client.describe_fleets().max_results(1000).into_paginator().send(),
            "DescribeFleets",
            region,
            index,
            |page| {
                for fleet in page.fleets() {
                    let state = fleet.fleet_state().map(|s| s.as_str()).unwrap_or("?");
                    if matches!(state, "deleted" | "deleted_terminating" | "failed") {
                        continue;
                    }
                    let id = fleet.fleet_id().unwrap_or("?");
                    for image in fleet
                        .launch_template_configs()
                        .iter()
                        .flat_map(|c| c.overrides())
                        .filter_map(|o| o.image_id())
                    {
                        index.add(image, format!("EC2 Fleet {id} ({state})"));
                    }
                }
            }
        );
        let live = Filter::builder()
            .name("state")
            .set_values(Some(["open", "active", "disabled"].map(String::from).to_vec()))
            .build();
        let requests = client
            .describe_spot_instance_requests()
            .filters(live)
            .max_results(1000)
            .into_paginator()
            .send();
        each_page!(requests, "DescribeSpotInstanceRequests", region, index, |page| {
            for request in page.spot_instance_requests() {
                let state = request.state().map(|s| s.as_str()).unwrap_or("?");
                let id = request.spot_instance_request_id().unwrap_or("?");
                if let Some(image) = request.launch_specification().and_then(|l| l.image_id()) {
                    index.add(image, format!("Spot request {id} ({state})"));
                }
            }
        });
    }

    /// Every version of every launch template; returns `(id, version) → image` and each
    /// template's `(name, default, latest)`.
    async fn launch_templates(
        &self,
        region: &Region,
        index: &mut InUseIndex,
    ) -> (LtVersions, Templates) {
        let client = self.clients.ec2(region);
        let mut templates = HashMap::new();
        let mut pages = client.describe_launch_templates().max_results(200).into_paginator().send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => {
                    for t in page.launch_templates() {
                        if let Some(id) = t.launch_template_id() {
                            let name = t.launch_template_name().unwrap_or_default().to_owned();
                            templates.insert(
                                id.to_owned(),
                                (
                                    name,
                                    t.default_version_number().unwrap_or(1),
                                    t.latest_version_number().unwrap_or(1),
                                ),
                            );
                        }
                    }
                }
                Err(e) => {
                    index.failures.push(failure("DescribeLaunchTemplates", region, &e).to_string());
                    return (HashMap::new(), templates);
                }
            }
        }
        // One template's versions are pages one after another; templates are asked at once.
        let read: Vec<TemplateVersions> =
            stream::iter(templates.iter().map(|(id, (name, default, _))| {
                template_versions(&client, region, id, name, *default)
            }))
            .buffer_unordered(TEMPLATE_CONCURRENCY)
            .collect()
            .await;
        let mut versions = HashMap::new();
        for template in read {
            for (image, usage) in template.uses {
                index.add(&image, usage);
            }
            versions.extend(template.versions);
            index.failures.extend(template.failure);
        }
        (versions, templates)
    }

    /// Launch configurations and Auto Scaling groups: a group uses its launch configuration's
    /// image, and the images of the launch template versions it names (its own, its mixed
    /// instances policy's and their overrides').
    async fn auto_scaling(
        &self,
        region: &Region,
        index: &mut InUseIndex,
        versions: &LtVersions,
        templates: &Templates,
    ) {
        let conf = aws_sdk_autoscaling::config::Builder::from(self.clients.sdk_config())
            .region(aws_config::Region::new(region.as_str().to_owned()))
            .interceptor(self.clients.calls().clone())
            .build();
        let client = aws_sdk_autoscaling::Client::from_conf(conf);
        // A lookup that failed keeps every image: the groups are not worth asking about then.
        let Some(configurations) = launch_configurations(&client, region, index).await else {
            return;
        };
        let templates = TemplateImages::new(versions, templates);
        let mut pages =
            client.describe_auto_scaling_groups().max_records(100).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    return index.failures.push(format!(
                        "Auto Scaling DescribeAutoScalingGroups in {region} failed: {}",
                        super::describe(&e)
                    ))
                }
            };
            for group in page.auto_scaling_groups() {
                add_group(group, &configurations, &templates, index);
            }
        }
    }
}

/// Every launch configuration's image, by the configuration's name, each added to `index` as
/// a use; `None` when the listing failed (a failure in `index`).
async fn launch_configurations(
    client: &aws_sdk_autoscaling::Client,
    region: &Region,
    index: &mut InUseIndex,
) -> Option<HashMap<String, String>> {
    let mut configurations = HashMap::new();
    let mut pages =
        client.describe_launch_configurations().max_records(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                index.failures.push(format!(
                    "Auto Scaling DescribeLaunchConfigurations in {region} failed: {}",
                    super::describe(&e)
                ));
                return None;
            }
        };
        for lc in page.launch_configurations() {
            let (Some(name), Some(image)) = (lc.launch_configuration_name(), lc.image_id()) else {
                continue;
            };
            index.add(image, format!("launch configuration {name}"));
            configurations.insert(name.to_owned(), image.to_owned());
        }
    }
    Some(configurations)
}

/// Adds the images an Auto Scaling group uses to `index`: its launch configuration's (from
/// `configurations`) and those of the launch template versions it names.
fn add_group(
    g: &AutoScalingGroup,
    configurations: &HashMap<String, String>,
    templates: &TemplateImages<'_>,
    index: &mut InUseIndex,
) {
    let group = format!("Auto Scaling group {}", g.auto_scaling_group_name().unwrap_or("?"));
    if let Some(image) = g.launch_configuration_name().and_then(|n| configurations.get(n)) {
        index.add(image, group.clone());
    }
    let mixed = g.mixed_instances_policy().and_then(|m| m.launch_template());
    let overrides = mixed.into_iter().flat_map(|lt| lt.overrides());
    let specs = g
        .launch_template()
        .into_iter()
        .chain(mixed.and_then(|lt| lt.launch_template_specification()))
        .chain(overrides.filter_map(|o| o.launch_template_specification()));
    for spec in specs {
        if let Some(image) = templates.image(spec) {
            index.add(&image, group.clone());
        }
    }
}

/// Launch template versions' images, as an Auto Scaling group's launch template specification
/// names them: by template id or name, at a version number, `$Default` or `$Latest`.
struct TemplateImages<'a> {
    versions: &'a LtVersions,
    templates: &'a Templates,
    by_name: HashMap<&'a str, &'a str>,
}

impl<'a> TemplateImages<'a> {
    fn new(versions: &'a LtVersions, templates: &'a Templates) -> Self {
        let by_name =
            templates.iter().map(|(id, (name, _, _))| (name.as_str(), id.as_str())).collect();
        Self { versions, templates, by_name }
    }

    /// The image of the version `spec` names; `None` when the template or version is unknown.
    fn image(&self, spec: &LaunchTemplateSpecification) -> Option<String> {
        let name = spec.launch_template_name();
        let id = spec
            .launch_template_id()
            .or_else(|| name.and_then(|n| self.by_name.get(n).copied()))?;
        let (_, default, latest) = self.templates.get(id)?;
        let number = match spec.version() {
            None | Some("$Default") => *default,
            Some("$Latest") => *latest,
            Some(n) => n.parse().ok()?,
        };
        self.versions.get(&(id.to_owned(), number)).cloned()
    }
}

impl DeprecationEc2 for Ec2Deprecation {
    async fn images(&self, region: &Region) -> Result<Vec<ImageFacts>, CatalogueError> {
        Ok(super::ec2::owned_images(&self.clients, region, self.page_size)
            .await?
            .iter()
            .filter_map(facts)
            .collect())
    }

    async fn images_in_pages(
        &self,
        region: &Region,
        pages: &tokio::sync::mpsc::UnboundedSender<Vec<ImageFacts>>,
    ) -> Result<(), CatalogueError> {
        super::ec2::owned_image_pages(&self.clients, region, self.page_size, |page| {
            let _ = pages.send(page.iter().filter_map(facts).collect());
        })
        .await
    }

    async fn image(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<Option<ImageFacts>, CatalogueError> {
        let found = super::ec2::describe_image(
            &self.clients,
            region,
            image,
            &["InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"],
        )
        .await?;
        Ok(found.as_ref().and_then(facts))
    }

    /// One DescribeImages for all of `ids`. EC2 refuses the whole request when one id is not
    /// there any more (`InvalidAMIID.NotFound`): then each is asked on its own.
    async fn images_by_id(
        &self,
        region: &Region,
        ids: &[ImageId],
    ) -> Result<BTreeMap<ImageId, ImageFacts>, CatalogueError> {
        let result = self
            .clients
            .ec2(region)
            .describe_images()
            .set_image_ids(Some(ids.iter().map(|i| i.as_str().to_owned()).collect()))
            .include_deprecated(true)
            .include_disabled(true)
            .send()
            .await;
        let images = match result {
            Ok(out) => out.images,
            Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidAMIID")) => {
                return crate::deprecation::images_one_by_one(self, region, ids).await;
            }
            Err(e) => return Err(failure("DescribeImages", region, &e)),
        };
        Ok(images
            .unwrap_or_default()
            .iter()
            .filter_map(facts)
            .filter(|f| ids.contains(&f.image_id))
            .map(|f| (f.image_id.clone(), f))
            .collect())
    }

    /// Instances, fleets and launch templates asked at once (each is a few requests, one after
    /// another); then Auto Scaling, which needs the launch templates' versions.
    async fn usage(&self, region: &Region) -> InUseIndex {
        let (mut index, mut fleets) = (InUseIndex::default(), InUseIndex::default());
        let mut templates_index = InUseIndex::default();
        let ((), (), (versions, templates)) = futures_util::future::join3(
            self.instances(region, &mut index),
            self.fleets(region, &mut fleets),
            self.launch_templates(region, &mut templates_index),
        )
        .await;
        index.merge(fleets);
        index.merge(templates_index);
        self.auto_scaling(region, &mut index, &versions, &templates).await;
        index
    }

    /// DescribeImageReferences about `images`, ten ids a request, [`REFERENCE_CONCURRENCY`]
    /// requests at a time.
    async fn add_references(&self, region: &Region, images: &[ImageId], index: &mut InUseIndex) {
        let client = self.clients.ec2(region);
        let mut chunks = stream::iter(images.chunks(REFERENCE_IDS).map(|chunk| {
            let client = client.clone();
            async move {
                let mut found = Vec::new();
                let mut pages = client
                    .describe_image_references()
                    .set_image_ids(Some(chunk.iter().map(|i| i.to_string()).collect()))
                    .include_all_resource_types(true)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    for r in page?.image_references() {
                        let kind = r.resource_type().map(|t| t.as_str()).unwrap_or("resource");
                        if let Some(image) = r.image_id() {
                            found.push((
                                image.to_owned(),
                                format!("{kind} {}", r.arn().unwrap_or("?")),
                            ));
                        }
                    }
                }
                Ok::<_, aws_sdk_ec2::error::SdkError<_, _>>(found)
            }
        }))
        .buffer_unordered(REFERENCE_CONCURRENCY);
        let (mut asked, mut unavailable, mut failed) = (0, 0, None);
        while let Some(result) = chunks.next().await {
            asked += 1;
            match result {
                Ok(found) => {
                    for (image, usage) in found {
                        index.add(&image, usage);
                    }
                }
                // InvalidAction: EC2 does not know the action here. Not UnsupportedOperation,
                // which EC2 answers about one request (what it asks for), not the API: a failure.
                Err(e) if e.code() == Some("InvalidAction") => unavailable += 1,
                Err(e) => {
                    failed.get_or_insert_with(|| {
                        failure("DescribeImageReferences", region, &e).to_string()
                    });
                }
            }
        }
        if let Some(failure) = failed {
            index.failures.push(failure);
        } else if unavailable == asked && asked > 0 {
            // Regions (and partitions) without the API answer InvalidAction to every request:
            // the other lookups still cover instances, templates and Auto Scaling.
            tracing::warn!(region = %region, "DescribeImageReferences is not available here: SSM parameter and Image Builder references are not checked");
            index.references_unavailable = true;
        } else if unavailable > 0 {
            index.failures.push(format!("DescribeImageReferences in {region}: {unavailable} of {asked} requests answered that the API is unavailable"));
        }
    }

    async fn launch_permissions(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<Vec<Grantee>, CatalogueError> {
        let out = self
            .clients
            .ec2(region)
            .describe_image_attribute()
            .image_id(image.as_str())
            .attribute(ImageAttributeName::LaunchPermission)
            .send()
            .await
            .map_err(|e| failure("DescribeImageAttribute", region, &e))?;
        Ok(out.launch_permissions().iter().map(super::ec2::launch_grantee).collect())
    }

    async fn usage_reports(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<Vec<UsageReport>, CatalogueError> {
        let mut reports = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .clients
                .ec2(region)
                .describe_image_usage_reports()
                .image_ids(image.as_str())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| failure("DescribeImageUsageReports", region, &e))?;
            reports.extend(out.image_usage_reports().iter().map(usage_report));
            token = out.next_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                return Ok(reports);
            }
        }
    }

    async fn usage_report_entries(
        &self,
        region: &Region,
        image: &ImageId,
        report: &str,
    ) -> Result<Vec<UsageEntry>, CatalogueError> {
        let mut entries = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .clients
                .ec2(region)
                .describe_image_usage_report_entries()
                .image_ids(image.as_str())
                .report_ids(report)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| failure("DescribeImageUsageReportEntries", region, &e))?;
            entries.extend(out.image_usage_report_entries().iter().map(|e| UsageEntry {
                account: e.account_id().unwrap_or("?").to_owned(),
                resource_type: e.resource_type().unwrap_or("?").to_owned(),
                // A count EC2 did not give is read as a use: never "unused" on doubt.
                count: e.usage_count().unwrap_or(1),
            }));
            token = out.next_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                return Ok(entries);
            }
        }
    }

    async fn start_usage_report(
        &self,
        region: &Region,
        image: &ImageId,
        accounts: Option<&[AccountId]>,
    ) -> Result<String, CatalogueError> {
        use aws_sdk_ec2::types::{
            ImageUsageResourceTypeOptionRequest as OptionRequest,
            ImageUsageResourceTypeRequest as TypeRequest, ResourceType, Tag, TagSpecification,
        };
        let every_version = OptionRequest::builder()
            .option_name("version-depth")
            .option_values(usage::TEMPLATE_VERSION_DEPTH.to_string())
            .build();
        let types = vec![
            TypeRequest::builder().resource_type("ec2:Instance").build(),
            TypeRequest::builder()
                .resource_type("ec2:LaunchTemplate")
                .resource_type_options(every_version)
                .build(),
        ];
        let scope =
            Tag::builder().key(usage::SCOPE_TAG_KEY).value(usage::scope_tag(accounts)).build();
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::ImageUsageReport)
            .tags(scope)
            .build();
        let out = self
            .clients
            .ec2(region)
            .create_image_usage_report()
            .image_id(image.as_str())
            .set_resource_types(Some(types))
            .set_account_ids(accounts.map(|a| a.iter().map(|a| a.to_string()).collect()))
            .tag_specifications(tags)
            .send()
            .await
            .map_err(|e| failure("CreateImageUsageReport", region, &e))?;
        out.report_id().map(str::to_owned).ok_or_else(|| CatalogueError {
            operation: "CreateImageUsageReport",
            region: region.clone(),
            message: "EC2 answered no report id".into(),
        })
    }

    async fn enable_deprecation(
        &self,
        region: &Region,
        image: &ImageId,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogueError> {
        self.clients
            .ec2(region)
            .enable_image_deprecation()
            .image_id(image.as_str())
            .deprecate_at(aws_smithy_types::DateTime::from_secs(at.timestamp()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("EnableImageDeprecation", region, &e))
    }

    async fn deregister(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        self.clients
            .ec2(region)
            .deregister_image()
            .image_id(image.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("DeregisterImage", region, &e))
    }

    async fn image_retention_rules(
        &self,
        region: &Region,
    ) -> Result<Vec<RetentionRule>, CatalogueError> {
        super::recycle_bin::retention_rules(
            &self.clients,
            region,
            aws_sdk_rbin::types::ResourceType::Ec2Image,
        )
        .await
    }

    async fn launch_image_of(
        &self,
        region: &Region,
        instance: &crate::ids::InstanceId,
    ) -> Result<Option<ImageId>, CatalogueError> {
        let catalogue = super::ec2::Ec2Catalogue::new(&self.clients);
        crate::catalogue::ImageCatalogue::launch_image_of(&catalogue, region, instance).await
    }

    async fn mark_quarantined(
        &self,
        region: &Region,
        image: &ImageId,
        value: &str,
    ) -> Result<(), CatalogueError> {
        let key = crate::quarantine::TAG_KEY;
        super::recycle_bin::mark(&self.clients, region, image.as_str(), key, value).await
    }

    async fn unmark_quarantined(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<(), CatalogueError> {
        let key = crate::quarantine::TAG_KEY;
        super::recycle_bin::unmark(&self.clients, region, image.as_str(), key).await
    }

    async fn disable_deprecation(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<(), CatalogueError> {
        self.clients
            .ec2(region)
            .disable_image_deprecation()
            .image_id(image.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("DisableImageDeprecation", region, &e))
    }

    async fn add_launch_permissions(
        &self,
        region: &Region,
        image: &ImageId,
        grantees: &[Grantee],
    ) -> Result<(), CatalogueError> {
        let mut add = aws_sdk_ec2::types::LaunchPermissionModifications::builder();
        for p in grantees.iter().filter_map(super::exposure::launch_permission) {
            add = add.add(p);
        }
        self.clients
            .ec2(region)
            .modify_image_attribute()
            .image_id(image.as_str())
            .launch_permission(add.build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("ModifyImageAttribute", region, &e))
    }

    async fn disable_image(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        self.clients
            .ec2(region)
            .disable_image()
            .image_id(image.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("DisableImage", region, &e))
    }

    async fn enable_image(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        self.clients
            .ec2(region)
            .enable_image()
            .image_id(image.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("EnableImage", region, &e))
    }

    async fn mark_retired(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        super::recycle_bin::mark(
            &self.clients,
            region,
            image.as_str(),
            RETIRED_TAG_KEY,
            RETIRED_TAG_VALUE,
        )
        .await
    }

    async fn unmark_retired(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        super::recycle_bin::unmark(&self.clients, region, image.as_str(), RETIRED_TAG_KEY).await
    }

    /// Always with the cooldown: once AMI Warden disables it, the image stays protected for
    /// 24 hours more.
    async fn enable_protection(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<(), CatalogueError> {
        self.clients
            .ec2(region)
            .enable_image_deregistration_protection()
            .image_id(image.as_str())
            .with_cooldown(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("EnableImageDeregistrationProtection", region, &e))
    }

    async fn disable_protection(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<(), CatalogueError> {
        self.clients
            .ec2(region)
            .disable_image_deregistration_protection()
            .image_id(image.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("DisableImageDeregistrationProtection", region, &e))
    }

    async fn mark_protected(&self, region: &Region, image: &ImageId) -> Result<(), CatalogueError> {
        super::recycle_bin::mark(
            &self.clients,
            region,
            image.as_str(),
            PROTECTED_TAG_KEY,
            PROTECTED_TAG_VALUE,
        )
        .await
    }

    async fn unmark_protected(
        &self,
        region: &Region,
        image: &ImageId,
    ) -> Result<(), CatalogueError> {
        super::recycle_bin::unmark(&self.clients, region, image.as_str(), PROTECTED_TAG_KEY).await
    }
}

/// What one launch template's versions say.
struct TemplateVersions {
    /// Each version's image, with how it is used.
    uses: Vec<(String, String)>,
    versions: LtVersions,
    failure: Option<String>,
}

/// How many launch templates' versions are read at once.
const TEMPLATE_CONCURRENCY: usize = 8;

/// Every version of launch template `id` (named `name`, default version `default`).
async fn template_versions(
    client: &aws_sdk_ec2::Client,
    region: &Region,
    id: &str,
    name: &str,
    default: i64,
) -> TemplateVersions {
    let mut read = TemplateVersions { uses: Vec::new(), versions: HashMap::new(), failure: None };
    let mut pages = client
        .describe_launch_template_versions()
        .launch_template_id(id)
        .max_results(200)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                let failed = failure("DescribeLaunchTemplateVersions", region, &e).to_string();
                read.failure = Some(failed);
                break;
            }
        };
        for v in page.launch_template_versions() {
            let number = v.version_number().unwrap_or(0);
            let Some(image) = v.launch_template_data().and_then(|d| d.image_id()) else {
                continue;
            };
            let tag = if number == default { " (default)" } else { "" };
            let usage = format!("launch template {id} ({name}) version {number}{tag}");
            read.uses.push((image.to_owned(), usage));
            read.versions.insert((id.to_owned(), number), image.to_owned());
        }
    }
    read
}

/// One report as DescribeImageUsageReports lists it.
fn usage_report(r: &aws_sdk_ec2::types::ImageUsageReport) -> UsageReport {
    UsageReport {
        id: r.report_id().unwrap_or_default().to_owned(),
        state: ReportState::parse(r.state().unwrap_or("?"), r.state_reason()),
        created: r
            .creation_time()
            .and_then(|t| DateTime::from_timestamp_millis(t.to_millis().ok()?)),
        accounts: r.account_ids().to_vec(),
        scope_tag: r
            .tags()
            .iter()
            .find(|t| t.key() == Some(usage::SCOPE_TAG_KEY))
            .and_then(|t| t.value().map(str::to_owned)),
        resource_types: r
            .resource_types()
            .iter()
            .filter_map(|t| t.resource_type().map(str::to_owned))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(last_launched: &str) -> aws_sdk_ec2::types::Image {
        aws_sdk_ec2::types::Image::builder()
            .image_id("ami-0123456789abcdef0")
            .creation_date("2026-01-01T00:00:00.000Z")
            .last_launched_time(last_launched)
            .build()
    }

    #[test]
    fn an_images_deregistration_protection_is_read_from_describe_images() {
        let with = |value: Option<&str>| {
            let image = aws_sdk_ec2::types::Image::builder()
                .image_id("ami-0123456789abcdef0")
                .set_deregistration_protection(value.map(str::to_owned))
                .build();
            facts(&image).expect("readable").deregistration_protection
        };
        assert_eq!(
            with(Some("enabled-with-cooldown")),
            DeregistrationProtection::EnabledWithCooldown
        );
        assert_eq!(with(Some("disabled")), DeregistrationProtection::Disabled);
        assert_eq!(with(Some("locked")), DeregistrationProtection::Unknown("locked".into()));
        assert_eq!(with(None), DeregistrationProtection::Disabled);
    }

    #[test]
    fn an_image_whose_launch_time_cannot_be_read_is_left_alone() {
        let read = facts(&image("2026-11-01T10:00:00Z")).expect("readable");
        assert_eq!(read.last_launched, Some("2026-11-01T10:00:00Z".parse().unwrap()));
        assert!(facts(&image("last Tuesday")).is_none(), "not 'never launched'");
    }
}
