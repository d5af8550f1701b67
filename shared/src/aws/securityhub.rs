//! [`FindingsSink`] over Security Hub: BatchImportFindings ([`BATCH`] a request) in each
//! finding's own region, GetFindings for this generator's open findings, BatchUpdateFindings
//! for the workflow status (which BatchImportFindings cannot change once a finding exists).
//! The ASFF JSON [`crate::exposure::findings`] builds is carried over field by field into the
//! SDK's types; nothing is decided here.

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingFilters, AwsSecurityFindingIdentifier,
    FindingProviderFields, FindingProviderSeverity, Partition, Recommendation, RecordState,
    Remediation, Resource, Severity, SeverityLabel, StringFilter, StringFilterComparison, Workflow,
    WorkflowStatus, WorkflowUpdate,
};
use serde_json::Value;

use super::{describe, Clients};
use crate::exposure::findings::{batches, FindingsError, FindingsSink, OpenFinding, GENERATOR_ID};
use crate::ids::{AccountId, Region};

/// Security Hub in the account the clients act in, any region.
pub struct SecurityHub {
    clients: Clients,
}

impl SecurityHub {
    pub fn new(clients: &Clients) -> Self {
        Self { clients: clients.clone() }
    }

    /// A client for `region`, counting its requests with the other clients'.
    fn client(&self, region: &Region) -> aws_sdk_securityhub::Client {
        let conf = aws_sdk_securityhub::config::Builder::from(self.clients.sdk_config())
            .region(aws_config::Region::new(region.as_str().to_owned()))
            .interceptor(self.clients.calls().clone())
            .build();
        aws_sdk_securityhub::Client::from_conf(conf)
    }
}

fn error(operation: &'static str, region: &Region, message: String) -> FindingsError {
    FindingsError { operation, region: region.to_string(), message }
}

fn equals(value: &str) -> StringFilter {
    StringFilter::builder().value(value).comparison(StringFilterComparison::Equals).build()
}

impl FindingsSink for SecurityHub {
    async fn import(&self, region: &Region, findings: &[Value]) -> Result<usize, FindingsError> {
        let client = self.client(region);
        let (mut imported, mut refused) = (0usize, Vec::new());
        for batch in batches(findings) {
            let out = client
                .batch_import_findings()
                .set_findings(Some(batch.iter().map(finding).collect()))
                .send()
                .await;
            match out {
                Ok(out) => {
                    imported += out.success_count().unwrap_or_default().max(0) as usize;
                    refused.extend(out.failed_findings().iter().map(|f| {
                        format!(
                            "{} refused ({}: {})",
                            f.id().unwrap_or("?"),
                            f.error_code().unwrap_or("?"),
                            f.error_message().unwrap_or_default()
                        )
                    }));
                }
                Err(e) => refused.push(format!(
                    "a request of {} finding(s) failed: {}",
                    batch.len(),
                    describe(&e)
                )),
            }
        }
        if refused.is_empty() {
            Ok(imported)
        } else {
            Err(error("BatchImportFindings", region, refused.join("; ")))
        }
    }

    async fn open_findings(
        &self,
        account: &AccountId,
        region: &Region,
    ) -> Result<Vec<OpenFinding>, FindingsError> {
        let client = self.client(region);
        let filters = AwsSecurityFindingFilters::builder()
            .generator_id(equals(GENERATOR_ID))
            .aws_account_id(equals(account.as_str()))
            .region(equals(region.as_str()))
            .record_state(equals("ACTIVE"))
            .build();
        let (mut ids, mut token) = (Vec::new(), None::<String>);
        loop {
            let out = client
                .get_findings()
                .filters(filters.clone())
                .max_results(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| error("GetFindings", region, describe(&e)))?;
            ids.extend(out.findings().iter().filter_map(|f| {
                let updated_at = f
                    .updated_at()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc));
                Some(OpenFinding { id: f.id()?.to_owned(), updated_at })
            }));
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next.to_owned()),
                None => return Ok(ids),
            }
        }
    }

    async fn resolve(
        &self,
        region: &Region,
        ids: &[(String, String)],
    ) -> Result<(), FindingsError> {
        let client = self.client(region);
        let mut failed = Vec::new();
        for batch in batches(ids) {
            let identifiers = batch
                .iter()
                .map(|(id, product)| {
                    AwsSecurityFindingIdentifier::builder().id(id).product_arn(product).build()
                })
                .collect();
            let out = client
                .batch_update_findings()
                .set_finding_identifiers(Some(identifiers))
                .workflow(WorkflowUpdate::builder().status(WorkflowStatus::Resolved).build())
                .send()
                .await;
            match out {
                Ok(out) => failed.extend(out.unprocessed_findings().iter().map(|u| {
                    format!(
                        "{} not resolved ({}: {})",
                        u.finding_identifier().and_then(|i| i.id()).unwrap_or("?"),
                        u.error_code().unwrap_or("?"),
                        u.error_message().unwrap_or_default()
                    )
                })),
                Err(e) => failed.push(format!(
                    "a request of {} finding(s) failed: {}",
                    batch.len(),
                    describe(&e)
                )),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(error("BatchUpdateFindings", region, failed.join("; ")))
        }
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
}

/// The SDK's form of an ASFF finding, for the fields [`crate::exposure::findings::to_asff`]
/// writes.
fn finding(v: &Value) -> AwsSecurityFinding {
    let severity = &v["Severity"];
    let provider = &v["FindingProviderFields"];
    let mut f = AwsSecurityFinding::builder()
        .set_schema_version(text(v, "SchemaVersion").map(str::to_owned))
        .set_id(text(v, "Id").map(str::to_owned))
        .set_product_arn(text(v, "ProductArn").map(str::to_owned))
        .set_generator_id(text(v, "GeneratorId").map(str::to_owned))
        .set_aws_account_id(text(v, "AwsAccountId").map(str::to_owned))
        .set_region(text(v, "Region").map(str::to_owned))
        .set_types(strings(&v["Types"]))
        .set_created_at(text(v, "CreatedAt").map(str::to_owned))
        .set_updated_at(text(v, "UpdatedAt").map(str::to_owned))
        .set_last_observed_at(text(v, "LastObservedAt").map(str::to_owned))
        .severity(
            Severity::builder()
                .set_label(text(severity, "Label").map(SeverityLabel::from))
                .set_original(text(severity, "Original").map(str::to_owned))
                .build(),
        )
        .finding_provider_fields(
            FindingProviderFields::builder()
                .severity(
                    FindingProviderSeverity::builder()
                        .set_label(text(&provider["Severity"], "Label").map(SeverityLabel::from))
                        .set_original(text(&provider["Severity"], "Original").map(str::to_owned))
                        .build(),
                )
                .set_types(strings(&provider["Types"]))
                .build(),
        )
        .set_title(text(v, "Title").map(str::to_owned))
        .set_description(text(v, "Description").map(str::to_owned))
        .remediation(
            Remediation::builder()
                .recommendation(
                    Recommendation::builder()
                        .set_text(
                            text(&v["Remediation"]["Recommendation"], "Text").map(str::to_owned),
                        )
                        .build(),
                )
                .build(),
        )
        .workflow(
            Workflow::builder()
                .set_status(text(&v["Workflow"], "Status").map(WorkflowStatus::from))
                .build(),
        )
        .set_record_state(text(v, "RecordState").map(RecordState::from));
    if let Some(fields) = v["ProductFields"].as_object() {
        for (k, value) in fields {
            f = f.product_fields(k, value.as_str().unwrap_or_default());
        }
    }
    for r in v["Resources"].as_array().into_iter().flatten() {
        f = f.resources(
            Resource::builder()
                .set_type(text(r, "Type").map(str::to_owned))
                .set_id(text(r, "Id").map(str::to_owned))
                .set_region(text(r, "Region").map(str::to_owned))
                .set_partition(text(r, "Partition").map(Partition::from))
                .build(),
        );
    }
    f.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_the_asff_json_reaches_the_sdk_finding() {
        let v = serde_json::json!({
            "SchemaVersion": "2018-10-08", "Id": "ami-warden/1/eu-west-1/ami-1/public",
            "ProductArn": "arn:aws:securityhub:eu-west-1:1:product/1/default",
            "GeneratorId": GENERATOR_ID, "AwsAccountId": "111122223333", "Region": "eu-west-1",
            "Types": ["Effects/Data Exposure"], "CreatedAt": "t0", "UpdatedAt": "t1",
            "LastObservedAt": "t1", "Severity": {"Label": "CRITICAL", "Original": "CRITICAL"},
            "FindingProviderFields": {"Severity": {"Label": "CRITICAL"}, "Types": ["Effects/Data Exposure"]},
            "Title": "T", "Description": "D", "Remediation": {"Recommendation": {"Text": "R"}},
            "ProductFields": {"ami-warden/Actor": "arn:aws:iam::1:user/u"},
            "Resources": [{"Type": "Other", "Id": "arn:aws:ec2:eu-west-1::image/ami-1", "Region": "eu-west-1", "Partition": "aws"}],
            "Workflow": {"Status": "RESOLVED"}, "RecordState": "ARCHIVED",
        });
        let f = finding(&v);
        assert_eq!(f.id(), Some("ami-warden/1/eu-west-1/ami-1/public"));
        assert_eq!(f.severity().and_then(|s| s.label()), Some(&SeverityLabel::Critical));
        assert_eq!(f.workflow().and_then(|w| w.status()), Some(&WorkflowStatus::Resolved));
        assert_eq!(f.record_state(), Some(&RecordState::Archived));
        assert_eq!(f.resources()[0].partition(), Some(&Partition::Aws));
        assert_eq!(
            f.product_fields().and_then(|p| p.get("ami-warden/Actor")).map(String::as_str),
            Some("arn:aws:iam::1:user/u")
        );
        assert_eq!(
            f.remediation().and_then(|r| r.recommendation()).and_then(|r| r.text()),
            Some("R")
        );
        assert_eq!(f.finding_provider_fields().map(|p| p.types().len()), Some(1));
    }
}
