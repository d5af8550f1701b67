"""AMI Warden's local-only extension of the moto emulator.

Used only by `dev/local-stack` to run the local stack; nothing in the product knows about it.
Each gap it fills is one where moto's behaviour differs from AWS in a way the product's
correctness depends on, and each is listed here:

- Request isolation. AWS serializes conflicting writes per item and isolates transactions;
  moto's TransactWriteItems snapshots all tables and, when a transaction is cancelled (for
  example by a failed condition), restores the snapshot, wiping writes other requests made in
  the meantime. The server here handles one request at a time, which restores the isolation
  AWS gives (moto runs under the GIL, so little throughput is lost).
- Transaction cost (`dynamodb.py`). moto backs up the whole table once per item of every
  TransactWriteItems; with requests serialized, saving and restoring only the items a
  transaction names is equivalent and keeps large tables usable.
- EC2 operations moto lacks (`ec2.py`): image block public access (Get/Enable/Disable), the
  `block-device-mapping.snapshot-id` filter of DescribeImages, `SourceImageId` and
  `GetImageAncestry`, and the others listed there.
- AMI deregistration protection (`ec2.py`): DeregisterImage refused while it is in force.
- Block public access for snapshots (`ec2.py`): Get/Enable/DisableSnapshotBlockPublicAccess.
- Allowed AMIs (`ec2.py`): Get/Enable/DisableAllowedImagesSettings and
  ReplaceImageCriteriaInAllowedImagesSettings, with DescribeImages' `ImageAllowed` computed from
  the criteria (and images not allowed left out while enabled).
- DescribeInstanceImageMetadata (`ec2.py`): each instance's launch image and its `ImageAllowed`.
- EC2 listing cost (`ec2_fast.py`, installed by `ec2.install()`): moto took some 13 s to
  list 10,000 images (3.5 s with it); rendering, tag lookups, filters and
  DescribeImageReferences are made cheaper there without changing a byte of the answers, which
  `dev/bench_ec2_equivalence.py` checks against moto's own code.
- CloudTrail event history (`cloudtrail.py`): `LookupEvents` over records handed in by the
  local scenario runner.
- Recycle Bin (`recycle_bin.py`): retention rules (added through a local-only endpoint, read
  through the `rbin` service's ListRules and GetRule), DeregisterImage and DeleteSnapshot
  keeping what a rule selects, ListImagesInRecycleBin, ListSnapshotsInRecycleBin,
  RestoreSnapshotFromRecycleBin and RestoreImageFromRecycleBin.
- Security Hub (`securityhub.py`): BatchImportFindings keeps the customer's workflow, GetFindings
  applies its filters, and BatchUpdateFindings, which moto lacks.
- STS (`sts.py`): AssumeRole of a role that does not exist is refused, as on AWS.
- Step Functions (`stepfunctions.py`): moto's emulator executes state machines; Lambda tasks
  reach functions registered by the local scenario (the testkit's Lambda Runtime API running
  the real binaries), a Distributed Map's ResultWriter writes its result files as AWS does, a
  Map Run fails past its tolerated failure threshold, and RedriveExecution re-runs a failed
  execution from where it stopped, a Distributed Map's children that succeeded not again.
"""
