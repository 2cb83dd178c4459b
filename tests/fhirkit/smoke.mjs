// tests/fhirkit/smoke.mjs — fhirgw driven by fhir-kit-client, an independent FHIR client
// library, over mutual TLS with a client certificate of the test PKI.
//
//   node smoke.mjs BASE_URL PKI_DIR EXAMPLES_DIR
//
// EXAMPLES_DIR: the guide's examples (ig/examples), whose two handover documents the
// handover walk sends from hospital-a to elv-a, each party with its own certificate.
//
// Prints one line per check and a closing "N passed, N failed"; exits 1 on any failure.
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { Agent, setGlobalDispatcher } from 'undici';
import { Client } from 'fhir-kit-client';

const [baseUrl, pki, examples] = process.argv.slice(2);
// fhir-kit-client uses the global fetch; its connections present hospital-a's certificate.
setGlobalDispatcher(new Agent({
  connect: {
    ca: readFileSync(`${pki}/ca.pem`),
    cert: readFileSync(`${pki}/clients/hospital-a.crt`),
    key: readFileSync(`${pki}/clients/hospital-a.key`),
  },
}));
const client = new Client({ baseUrl });
// A client for another organisation: its own connections, presenting its own certificate.
function clientOf(org) {
  const dispatcher = new Agent({
    connect: {
      ca: readFileSync(`${pki}/ca.pem`),
      cert: readFileSync(`${pki}/clients/${org}.crt`),
      key: readFileSync(`${pki}/clients/${org}.key`),
    },
  });
  return new Client({ baseUrl, requestOptions: { dispatcher } });
}

let passed = 0, failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    const detail = e.response?.data?.issue ? ` ${JSON.stringify(e.response.data.issue)}` : '';
    console.log(`FAIL ${name}: ${e.message}${detail}`);
  }
}

let patientId;
await check('capabilityStatement', async () => {
  const cs = await client.capabilityStatement();
  assert.equal(cs.resourceType, 'CapabilityStatement');
  assert.equal(cs.fhirVersion, '4.0.1');
  assert.ok(cs.rest[0].resource.some((r) => r.type === 'CarePlan'));
});
await check('create', async () => {
  const p = await client.create({
    resourceType: 'Patient',
    body: { resourceType: 'Patient', name: [{ family: 'de Vries', given: ['Anna'] }], gender: 'female' },
  });
  assert.equal(p.meta.versionId, '1');
  patientId = p.id;
});
await check('read', async () => {
  const p = await client.read({ resourceType: 'Patient', id: patientId });
  assert.equal(p.name[0].family, 'de Vries');
});
await check('update', async () => {
  const p = await client.update({
    resourceType: 'Patient', id: patientId,
    body: { resourceType: 'Patient', id: patientId, name: [{ family: 'de Vries' }], gender: 'other' },
  });
  assert.equal(p.meta.versionId, '2');
});
await check('vread', async () => {
  const p = await client.vread({ resourceType: 'Patient', id: patientId, version: '1' });
  assert.equal(p.gender, 'female');
});
await check('search with paging', async () => {
  for (let i = 0; i < 3; i++)
    await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', name: [{ family: 'Pagina' }] } });
  const page1 = await client.search({ resourceType: 'Patient', searchParams: { family: 'pagina', _count: 2 } });
  assert.equal(page1.type, 'searchset');
  assert.equal(page1.total, 3);
  assert.equal(page1.entry.length, 2);
  const page2 = await client.nextPage({ bundle: page1 });
  assert.equal(page2.entry.length, 1);
  const back = await client.prevPage({ bundle: page2 });
  assert.deepEqual(back.entry.map((e) => e.resource.id), page1.entry.map((e) => e.resource.id));
});
await check('history', async () => {
  const h = await client.resourceHistory({ resourceType: 'Patient', id: patientId });
  assert.equal(h.type, 'history');
  assert.equal(h.total, 2);
});
await check('patch (JSON Patch)', async () => {
  const p = await client.patch({
    resourceType: 'Patient', id: patientId,
    jsonPatch: [{ op: 'test', path: '/gender', value: 'other' }, { op: 'replace', path: '/gender', value: 'female' }],
  });
  assert.equal(p.gender, 'female');
  assert.equal(p.meta.versionId, '3');
  try {
    await client.patch({
      resourceType: 'Patient', id: patientId, jsonPatch: [{ op: 'test', path: '/gender', value: 'other' }],
    });
    assert.fail('a failing test operation was applied');
  } catch (e) {
    assert.equal(e.response.status, 422);
    assert.equal(e.response.data.resourceType, 'OperationOutcome');
  }
});
await check('transaction', async () => {
  const t = await client.transaction({
    body: {
      resourceType: 'Bundle', type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:6c3e8b7e-1d4f-4a5b-9c2d-0e1f2a3b4c5d', resource: { resourceType: 'Patient' },
          request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'CarePlan', status: 'active', intent: 'plan',
                      subject: { reference: 'urn:uuid:6c3e8b7e-1d4f-4a5b-9c2d-0e1f2a3b4c5d' } },
          request: { method: 'POST', url: 'CarePlan' } },
      ],
    },
  });
  assert.equal(t.type, 'transaction-response');
  assert.match(t.entry[1].resource.subject.reference, /^Patient\//);
});
await check('update after read (read-modify-write keeps the resource intact)', async () => {
  const p = await client.read({ resourceType: 'Patient', id: patientId });
  p.birthDate = '1950-02-03';
  const u = await client.update({ resourceType: 'Patient', id: patientId, body: p });
  assert.equal(u.birthDate, '1950-02-03');
  assert.deepEqual(Object.keys(u.meta).sort(), ['lastUpdated', 'versionId']);
  const again = await client.read({ resourceType: 'Patient', id: patientId });
  assert.equal(again.meta.versionId, u.meta.versionId);
  assert.equal(again.name[0].family, 'de Vries');
});
await check('a re-sent transaction refers to the Patient its ifNoneExist matched', async () => {
  const bsn = 'http://fhir.nl/fhir/NamingSystem/bsn|999911131';
  const body = {
    resourceType: 'Bundle', type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:7d4f9c8f-2e5a-4b6c-8d3e-1f2a3b4c5d6e',
        resource: { resourceType: 'Patient', identifier: [{ system: 'http://fhir.nl/fhir/NamingSystem/bsn', value: '999911131' }] },
        request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${bsn}` } },
      { resource: { resourceType: 'CarePlan', status: 'active', intent: 'plan',
                    subject: { reference: 'urn:uuid:7d4f9c8f-2e5a-4b6c-8d3e-1f2a3b4c5d6e' } },
        request: { method: 'POST', url: 'CarePlan' } },
    ],
  };
  const first = await client.transaction({ body });
  const second = await client.transaction({ body });
  assert.match(first.entry[0].response.status, /^201/);
  assert.match(second.entry[0].response.status, /^200/);
  assert.equal(second.entry[1].resource.subject.reference, first.entry[1].resource.subject.reference);
  const found = await client.search({ resourceType: 'Patient', searchParams: { identifier: bsn } });
  assert.equal(found.total, 1);
});
await check('conditional update', async () => {
  const mrn = 'http://x.org/mrn|fk-1';
  const body = { resourceType: 'Patient', identifier: [{ system: 'http://x.org/mrn', value: 'fk-1' }], gender: 'male' };
  const created = await client.update({ resourceType: 'Patient', searchParams: { identifier: mrn }, body });
  assert.equal(created.meta.versionId, '1');
  const updated = await client.update({ resourceType: 'Patient', searchParams: { identifier: mrn },
                                        body: { ...body, gender: 'female' } });
  assert.equal(updated.id, created.id);
  assert.equal(updated.meta.versionId, '2');
});
await check('validation errors are OperationOutcomes', async () => {
  try {
    await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', gender: 'mal' } });
    assert.fail('an invalid Patient was accepted');
  } catch (e) {
    assert.equal(e.response.status, 422);
    assert.equal(e.response.data.resourceType, 'OperationOutcome');
    assert.equal(e.response.data.issue[0].expression[0], 'Patient.gender');
  }
});
await check('delete', async () => {
  await client.delete({ resourceType: 'Patient', id: patientId });
  try {
    await client.read({ resourceType: 'Patient', id: patientId });
    assert.fail('a deleted Patient was read');
  } catch (e) {
    assert.equal(e.response.status, 410);
  }
});
// The handover workflow (docs/handover.md) as a sender and a receiver drive it with a client library.
const URA = 'http://fhir.nl/fhir/NamingSystem/ura';
const hospital = client, elv = clientOf('elv-a'), other = clientOf('elv-b');
const example = (name) => JSON.parse(readFileSync(`${examples}/${name}`, 'utf8'));
const handover = {
  resourceType: 'Parameters',
  parameter: [
    { name: 'advanceNotice', resource: example('Bundle-advance-notice-document-example.json') },
    { name: 'document', resource: example('Bundle-handover-document-example.json') },
    { name: 'receiver', valueReference: { identifier: { system: URA, value: '90000301' } } },
  ],
};
const statusOf = async (fn) => {
  try {
    await fn();
    return 200;
  } catch (e) {
    assert.equal(e.response?.data?.resourceType, 'OperationOutcome', `${e.message}`);
    return e.response.status;
  }
};
const moveTask = (who, id, status) => who.patch({
  resourceType: 'Task', id, jsonPatch: [{ op: 'replace', path: '/status', value: status }],
});
let task, noticeId, documentId;
await check('handover: refused while the receiver has no attested agreement (ELV-HANDOVER)', async () => {
  try {
    await hospital.operation({ name: '$handover', input: handover });
    assert.fail('a handover to an ELV without an agreement was accepted');
  } catch (e) {
    assert.equal(e.response.status, 422);
    assert.match(e.response.data.issue[0].diagnostics, /^ELV-HANDOVER/);
  }
});
await check('handover: the receiver attests its agreement on its directory entry', async () => {
  const entry = await elv.read({ resourceType: 'Organization', id: 'ura-90000301' });
  entry.extension = [{
    url: 'https://fhirgw.nl/fhir/StructureDefinition/attestation',
    extension: [
      { url: 'requirement', valueCoding: { system: 'https://fhirgw.nl/fhir/CodeSystem/requirement',
                                           code: 'elv-overdracht-ziekenhuis' } },
      { url: 'evidence', valueUrl: 'https://documents.elv-a.example/hospitals.pdf' },
      { url: 'validUntil', valueDate: '2099-12-31' },
    ],
  }];
  const updated = await elv.update({ resourceType: 'Organization', id: entry.id, body: entry });
  assert.equal(updated.meta.versionId, String(Number(entry.meta.versionId) + 1));
});
await check('handover: the sender hands over and gets the Task', async () => {
  task = await hospital.operation({ name: '$handover', input: handover });
  assert.equal(task.resourceType, 'Task');
  assert.equal(task.status, 'requested');
  assert.equal(task.owner.reference, 'Organization/ura-90000301');
  for (const input of task.input) {
    const id = input.valueReference.reference.replace(/^Bundle\//, '');
    if (input.type.coding[0].code === '57830-2') noticeId = id;
    else documentId = id;
  }
  assert.ok(noticeId && documentId, JSON.stringify(task.input));
});
await check('handover: the same handover sent again gives the same Task', async () => {
  const again = await hospital.operation({ name: '$handover', input: handover });
  assert.equal(again.id, task.id);
});
await check('handover: the receiver finds it by polling, reads the notice and accepts', async () => {
  const found = await elv.search({
    resourceType: 'Task', searchParams: { owner: 'Organization/ura-90000301', status: 'requested' },
  });
  assert.deepEqual(found.entry.map((e) => e.resource.id), [task.id]);
  const notice = await elv.read({ resourceType: 'Bundle', id: noticeId });
  assert.equal(notice.type, 'document');
  assert.equal(await statusOf(() => elv.read({ resourceType: 'Bundle', id: documentId })), 404);
  assert.equal((await moveTask(elv, task.id, 'accepted')).status, 'accepted');
});
await check('handover: the receiver may change nothing but the status', async () => {
  const current = await elv.read({ resourceType: 'Task', id: task.id });
  const status = await statusOf(() => elv.update({
    resourceType: 'Task', id: task.id, body: { ...current, description: 'changed by the receiver' },
  }));
  assert.ok(status === 409 || status === 422, `answered ${status}`);
});
await check('handover: in progress, the receiver reads the handover; nobody else does', async () => {
  assert.equal((await moveTask(hospital, task.id, 'in-progress')).status, 'in-progress');
  const doc = await elv.read({ resourceType: 'Bundle', id: documentId });
  assert.equal(doc.entry[0].resource.resourceType, 'Composition');
  assert.equal(await statusOf(() => other.read({ resourceType: 'Bundle', id: documentId })), 404);
  assert.equal(await statusOf(() => other.read({ resourceType: 'Task', id: task.id })), 404);
});
await check('handover: completed, the receiver reads it no more; both read the Task\'s history', async () => {
  assert.equal((await moveTask(elv, task.id, 'completed')).status, 'completed');
  assert.equal(await statusOf(() => elv.read({ resourceType: 'Bundle', id: documentId })), 404);
  for (const who of [hospital, elv]) {
    const history = await who.resourceHistory({ resourceType: 'Task', id: task.id });
    assert.deepEqual(history.entry.map((e) => e.resource.status),
                     ['completed', 'in-progress', 'accepted', 'requested']);
  }
});
console.log(`fhir-kit-client: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
