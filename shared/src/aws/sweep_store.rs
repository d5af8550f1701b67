//! Where an organization sweep keeps its run in S3: each job's plan (`runs/<run>/<job>/
//! units.json`, read by the Distributed Map's ItemReader), the Map Run's results (written by
//! its ResultWriter under `runs/<run>/<job>/results/`) and the job's summary
//! (`runs/<run>/<job>/summary.json`). Nothing here decides anything.

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;

use super::Clients;
use crate::sweep::{Job, JobSummary, Unit};

pub struct SweepStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl SweepStore {
    pub fn new(clients: &Clients, bucket: impl Into<String>) -> Self {
        Self { client: clients.s3(), bucket: bucket.into() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn prefix(run: &str, job: Job) -> String {
        format!("runs/{run}/{job}")
    }

    /// The key of a job's plan.
    pub fn units_key(run: &str, job: Job) -> String {
        format!("{}/units.json", Self::prefix(run, job))
    }

    /// The prefix its Map Run's ResultWriter writes under.
    pub fn results_prefix(run: &str, job: Job) -> String {
        format!("{}/results", Self::prefix(run, job))
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                format!("S3 PutObject s3://{}/{key}: {}", self.bucket, super::describe(&e))
            })?;
        Ok(())
    }

    /// The object's bytes, or `None` when there is no such key.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let out = self.client.get_object().bucket(&self.bucket).key(key).send().await;
        let out = match out {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "S3 GetObject s3://{}/{key}: {}",
                    self.bucket,
                    super::describe(&e)
                ))
            }
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| format!("reading s3://{}/{key}: {e}", self.bucket))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    /// Writes a job's plan; returns its key.
    pub async fn put_units(&self, run: &str, job: Job, units: &[Unit]) -> Result<String, String> {
        let key = Self::units_key(run, job);
        self.put(&key, serde_json::to_vec(units).map_err(|e| e.to_string())?).await?;
        Ok(key)
    }

    /// A job's plan, or `None` when the job was never planned in this run.
    pub async fn units(&self, run: &str, job: Job) -> Result<Option<Vec<Unit>>, String> {
        let key = Self::units_key(run, job);
        let Some(bytes) = self.get(&key).await? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("s3://{}/{key}: {e}", self.bucket))
    }

    /// Every row of every result file the job's Map Runs wrote (a redriven run writes again).
    pub async fn map_run_rows(&self, run: &str, job: Job) -> Result<Vec<Value>, String> {
        let mut rows = Vec::new();
        for key in self.result_files(run, job).await? {
            let Some(bytes) = self.get(&key).await? else { continue };
            let file: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("s3://{}/{key}: {e}", self.bucket))?;
            rows.extend(file.as_array().cloned().unwrap_or_default());
        }
        Ok(rows)
    }

    /// The result files the manifests under the job's results prefix list.
    async fn result_files(&self, run: &str, job: Job) -> Result<Vec<String>, String> {
        let manifests: Vec<String> = self
            .objects(&Self::results_prefix(run, job))
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|k| k.ends_with("/manifest.json"))
            .collect();
        let mut files = Vec::new();
        for manifest in manifests {
            let Some(bytes) = self.get(&manifest).await? else { continue };
            let manifest: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("s3://{}/{manifest}: {e}", self.bucket))?;
            for status in ["SUCCEEDED", "FAILED", "PENDING"] {
                let listed =
                    manifest["ResultFiles"][status].as_array().cloned().unwrap_or_default();
                files.extend(listed.iter().filter_map(|f| f["Key"].as_str().map(str::to_owned)));
            }
        }
        Ok(files)
    }

    /// Every object under `prefix`, with when it was last written.
    async fn objects(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Option<aws_sdk_s3::primitives::DateTime>)>, String> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                format!("S3 ListObjectsV2 s3://{}/{prefix}: {}", self.bucket, super::describe(&e))
            })?;
            let listed = page.contents().iter();
            objects.extend(
                listed.filter_map(|o| Some((o.key()?.to_owned(), o.last_modified().copied()))),
            );
        }
        Ok(objects)
    }

    /// Records that the job's summary was sent, with what it said.
    pub async fn put_summary(&self, summary: &JobSummary) -> Result<(), String> {
        let key = format!("{}/summary.json", Self::prefix(&summary.run, summary.job));
        self.put(&key, serde_json::to_vec(summary).map_err(|e| e.to_string())?).await
    }

    /// Whether the job's summary was sent after its Map Run last wrote results: a redriven
    /// run that fails again at this job writes newer results, which the summary sent before
    /// does not tell of.
    pub async fn has_current_summary(&self, run: &str, job: Job) -> Result<bool, String> {
        let (mut summary, mut results) = (None, None);
        for (key, at) in self.objects(&format!("{}/", Self::prefix(run, job))).await? {
            let Some(at) = at else { continue };
            if key.ends_with("/summary.json") {
                summary = Some(at);
            } else if key.ends_with("/manifest.json") {
                results = results.max(Some(at));
            }
        }
        Ok(match (summary, results) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(summary), Some(results)) => summary >= results,
        })
    }
}
