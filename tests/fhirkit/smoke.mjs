// tests/fhirkit/smoke.mjs — fhirgw driven by fhir-kit-client, an independent FHIR client
// library, over mutual TLS with a client certificate of the test PKI.
//
//   node smoke.mjs BASE_URL PKI_DIR
//
// Prints one line per check and a closing "N passed, N failed"; exits 1 on any failure.
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { Agent, setGlobalDispatcher } from 'undici';
import { Client } from 'fhir-kit-client';

const [baseUrl, pki] = process.argv.slice(2);
// fhir-kit-client uses the global fetch; its connections present hospital-a's certificate.
setGlobalDispatcher(new Agent({
  connect: {
    ca: readFileSync(`${pki}/ca.pem`),
    cert: readFileSync(`${pki}/clients/hospital-a.crt`),
    key: readFileSync(`${pki}/clients/hospital-a.key`),
  },
}));
const client = new Client({ baseUrl });

let passed = 0, failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
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
console.log(`fhir-kit-client: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
