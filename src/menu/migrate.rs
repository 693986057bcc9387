//! Runs a migration with `send::run` in its own thread and turns its
//! progress into the menu's events.

use super::backend::{DiskBar, MigrationEvent, MigrationPlan, MigrationResult, ResultDisk};
use crate::send::{self, DiskProgress, ProgressEvent, SendOptions, SendReport};
use crate::wire::machine::GuestOptions;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

fn bars(disks: &[DiskProgress]) -> Vec<DiskBar> {
    disks
        .iter()
        .map(|d| DiskBar {
            source: d.source.clone(),
            done_bytes: d.done_bytes,
            total_bytes: d.total_bytes,
        })
        .collect()
}

/// The menu's view of one send progress event; None for `Finished`
/// (the result comes from `send::run`'s return).
pub fn event(ev: &ProgressEvent) -> Option<MigrationEvent> {
    match ev {
        ProgressEvent::Plan { disks, .. } => Some(MigrationEvent::Plan { disks: bars(disks) }),
        ProgressEvent::Progress {
            disks,
            bytes_per_sec,
            eta_secs,
            ..
        } => Some(MigrationEvent::Progress {
            disks: bars(disks),
            bytes_per_sec: *bytes_per_sec,
            eta_secs: *eta_secs,
        }),
        ProgressEvent::Finished { .. } => None,
        other => Some(MigrationEvent::Log(send::progress::text(other))),
    }
}

/// Digests from the sender, image paths and the conversion's config and
/// warnings from the receiver's report (report.json).
pub fn result(report: &SendReport) -> MigrationResult {
    let rr = &report.receiver_report;
    let conversion = rr.conversion.as_ref();
    MigrationResult {
        name: report.name.clone(),
        disks: report
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| ResultDisk {
                source: d.source.clone(),
                image: rr.disks.get(i).map(|r| r.target.clone()),
                digest: d.content_digest.clone(),
            })
            .collect(),
        config_path: conversion.map(|c| c.config_path.clone()),
        warnings: conversion.map(|c| c.warnings.clone()).unwrap_or_default(),
    }
}

pub fn start(plan: &MigrationPlan, events: Sender<MigrationEvent>) -> std::io::Result<()> {
    let mut opts = SendOptions::new(
        &plan.server,
        &plan.token,
        &plan.fingerprint,
        plan.disks.clone(),
    );
    opts.name = Some(plan.name.clone());
    opts.guest = GuestOptions {
        layout: plan.layout,
        xen_type: plan.xen_type,
        bridge: plan.bridge.clone(),
        memory_mib: Some(plan.memory_mib),
        vcpus: Some(plan.vcpus),
    };
    let sink = Mutex::new(events.clone());
    opts.progress = Some(Arc::new(move |ev: &ProgressEvent| {
        if let (Some(e), Ok(tx)) = (event(ev), sink.lock()) {
            let _ = tx.send(e);
        }
    }));
    std::thread::Builder::new()
        .name("p2xen-send".into())
        .spawn(move || {
            let ev = match send::run(&opts) {
                Ok(report) => MigrationEvent::Finished(result(&report)),
                Err(e) => MigrationEvent::Failed(e.to_string()),
            };
            let _ = events.send(ev);
        })
        .map(drop)
}
