// deploy/validate-k8s.js - check the Kubernetes manifests offline.
//
//   (cd deploy && npm ci)        # once: kubernetes-models and js-yaml
//   node deploy/validate-k8s.js deploy/kustomization.yaml [DESCRIBE]
//
// Renders the kustomization the way `kubectl kustomize` does for the
// fields this one uses (resources, namespace, labels, images), then:
//
// 1. validates every object against the Kubernetes OpenAPI schemas of
//    the kubernetes-models package (unknown kinds and fields, wrong types,
//    missing required fields all fail);
// 2. checks what the project promises of its manifests: every container
//    has resource requests and limits; every messenger container has a
//    liveness probe on /healthz and a readiness probe on /readyz;
//    gateway is a Deployment, cache and postgres are StatefulSets; every
//    workload has a Service and a PodDisruptionBudget selecting its pods;
//    the ConfigMap and Secret it reads exist with the keys it reads;
//    every redis-server is bounded (--maxmemory below the container's
//    memory limit, --maxmemory-policy allkeys-lru);
// 3. with DESCRIBE (the output of `scripts/cluster describe`), that every
//    messenger container gets every variable scripts/cluster gives the
//    same program (from env, or the ConfigMap or Secret it reads).
//
// Prints one line per object and per failed rule; exits 1 on any failure.
'use strict';
const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');

// Variables scripts/cluster sets that have no meaning in Kubernetes:
// MESSENGER_BIND is in the ConfigMap (0.0.0.0); GATEWAY_TRUST_PROXY
// trusts X-Real-IP from loopback, where nginx runs only locally.
const NOT_IN_KUBERNETES = new Set(['GATEWAY_TRUST_PROXY']);
const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet']);
const EXPECTED_KIND = { gateway: 'Deployment', cache: 'StatefulSet', postgres: 'StatefulSet' };

let failures = 0;
function problem(what) {
  failures++;
  console.log('FAIL    ' + what);
}

// ---- rendering -------------------------------------------------------

function render(kustomizationPath) {
  const dir = path.dirname(kustomizationPath);
  const k = yaml.load(fs.readFileSync(kustomizationPath, 'utf8'));
  const docs = [];
  for (const res of k.resources || []) {
    const text = fs.readFileSync(path.join(dir, res), 'utf8');
    for (const doc of yaml.loadAll(text)) if (doc) docs.push({ file: res, doc });
  }
  for (const { doc } of docs) {
    doc.metadata = doc.metadata || {};
    if (k.namespace && doc.kind !== 'Namespace') doc.metadata.namespace = k.namespace;
    for (const l of k.labels || []) {
      doc.metadata.labels = Object.assign({}, doc.metadata.labels, l.pairs);
    }
    for (const c of containersOf(doc)) {
      for (const img of k.images || []) {
        if (c.image === img.name) c.image = (img.newName || img.name) + (img.newTag ? ':' + img.newTag : '');
      }
    }
  }
  return docs;
}

function podSpec(doc) {
  return WORKLOAD_KINDS.has(doc.kind) ? doc.spec && doc.spec.template && doc.spec.template.spec : undefined;
}

function containersOf(doc) {
  const spec = podSpec(doc);
  if (!spec) return [];
  return (spec.initContainers || []).concat(spec.containers || []);
}

// ---- schema ----------------------------------------------------------

function modelClass(doc) {
  try {
    return require('kubernetes-models/' + doc.apiVersion)[doc.kind];
  } catch (e) {
    return undefined;
  }
}

function validateSchema(file, doc) {
  const name = doc.kind + ' ' + (doc.metadata && doc.metadata.name) + ' (' + file + ')';
  const Model = modelClass(doc);
  if (!Model) return problem('unknown ' + doc.apiVersion + ' ' + name);
  try {
    new Model(doc).validate();
    console.log('ok      ' + name);
  } catch (e) {
    problem('invalid ' + name + ': ' + e.message);
  }
}

// ---- policy ----------------------------------------------------------

function isMessenger(c) {
  return /^messenger(:|$)/.test(c.image || '') || /\/messenger(:|$)/.test(c.image || '');
}

function selects(selector, labels) {
  const want = (selector && (selector.matchLabels || selector)) || {};
  const keys = Object.keys(want);
  return keys.length > 0 && keys.every((key) => labels && labels[key] === want[key]);
}

function probePath(probe) {
  return probe && probe.httpGet && probe.httpGet.path;
}

// Quantities as Kubernetes and Redis write them ("2Gi", "1536mb"), in bytes.
function bytesOf(q) {
  const m = /^([0-9]+)([A-Za-z]*)$/.exec(String(q || ''));
  const unit = { '': 1, k: 1e3, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3,
    Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, K: 1e3, M: 1e6, G: 1e9 };
  if (!m) return NaN;
  const u = m[2] in unit ? m[2] : m[2].toLowerCase();
  return u in unit ? Number(m[1]) * unit[u] : NaN;
}

// A cache node's Redis holds a cache that grows with the users it owns:
// without maxmemory below the container's limit the kernel kills it,
// and only allkeys-lru evicts keys the hot mailbox may lose (it reads
// them as misses; volatile policies evict nothing here, no key has a TTL).
function checkRedis(c, where) {
  const args = [].concat(c.command || [], c.args || []);
  if (!args.includes('redis-server')) return;
  const opt = (name) => {
    const i = args.indexOf('--' + name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const limit = bytesOf(c.resources && c.resources.limits && c.resources.limits.memory);
  const max = bytesOf(opt('maxmemory'));
  if (!(max > 0 && max < limit)) problem(where + ': --maxmemory is not set below the memory limit');
  if (opt('maxmemory-policy') !== 'allkeys-lru') problem(where + ': --maxmemory-policy is not allkeys-lru');
}

function checkContainers(doc) {
  const spec = podSpec(doc);
  const init = new Set((spec.initContainers || []).map((c) => c.name));
  for (const c of containersOf(doc)) {
    const where = doc.kind + ' ' + doc.metadata.name + ' container ' + c.name;
    const r = c.resources || {};
    for (const part of ['requests', 'limits']) {
      for (const res of ['cpu', 'memory']) {
        if (!r[part] || !r[part][res]) problem(where + ': no resources.' + part + '.' + res);
      }
    }
    checkRedis(c, where);
    if (isMessenger(c) && !init.has(c.name)) {
      if (probePath(c.livenessProbe) !== '/healthz') problem(where + ': liveness probe is not GET /healthz');
      if (probePath(c.readinessProbe) !== '/readyz') problem(where + ': readiness probe is not GET /readyz');
    }
  }
}

function checkWorkloads(docs) {
  const all = docs.map((d) => d.doc);
  for (const doc of all.filter((d) => WORKLOAD_KINDS.has(d.kind))) {
    const name = doc.metadata.name;
    const labels = doc.spec.template.metadata && doc.spec.template.metadata.labels;
    if (EXPECTED_KIND[name] && doc.kind !== EXPECTED_KIND[name]) {
      problem(name + ' is a ' + doc.kind + ', expected a ' + EXPECTED_KIND[name]);
    }
    if (!selects(doc.spec.selector, labels)) problem(doc.kind + ' ' + name + ': selector does not match its pods');
    if (!all.some((d) => d.kind === 'Service' && selects(d.spec && d.spec.selector, labels))) {
      problem(doc.kind + ' ' + name + ': no Service selects its pods');
    }
    if (!all.some((d) => d.kind === 'PodDisruptionBudget' && selects(d.spec && d.spec.selector, labels))) {
      problem(doc.kind + ' ' + name + ': no PodDisruptionBudget selects its pods');
    }
    checkContainers(doc);
  }
  for (const want of Object.keys(EXPECTED_KIND)) {
    if (!all.some((d) => WORKLOAD_KINDS.has(d.kind) && d.metadata.name === want)) problem('no workload ' + want);
  }
}

// The names a container sees, from env and from the ConfigMaps and
// Secrets it reads (each of which must exist and hold the keys read).
function visibleEnv(c, all) {
  const names = new Set();
  const find = (kind, name) => all.find((d) => d.kind === kind && d.metadata.name === name);
  const keysOf = (obj) => Object.keys((obj && (obj.data || obj.stringData)) || {});
  for (const from of c.envFrom || []) {
    const ref = from.configMapRef ? ['ConfigMap', from.configMapRef.name] : ['Secret', from.secretRef.name];
    const obj = find(ref[0], ref[1]);
    if (!obj) problem('container ' + c.name + ' reads ' + ref[0] + ' ' + ref[1] + ', which does not exist');
    for (const key of keysOf(obj)) names.add(key);
  }
  for (const e of c.env || []) {
    names.add(e.name);
    const ref = e.valueFrom && (e.valueFrom.secretKeyRef || e.valueFrom.configMapKeyRef);
    if (!ref) continue;
    const kind = e.valueFrom.secretKeyRef ? 'Secret' : 'ConfigMap';
    const obj = find(kind, ref.name);
    if (!obj || !keysOf(obj).includes(ref.key)) {
      problem('container ' + c.name + ': ' + e.name + ' reads ' + kind + ' ' + ref.name + ' key ' + ref.key + ', which does not exist');
    }
  }
  return names;
}

// `scripts/cluster describe`: "NAME PROGRAM VAR..." per component; the
// variables each messenger program gets, merged over its instances.
function describedPrograms(describePath) {
  const programs = {};
  for (const line of fs.readFileSync(describePath, 'utf8').split('\n')) {
    const words = line.trim().split(/\s+/).filter(Boolean);
    if (words.length < 2) continue;
    const program = words[1];
    programs[program] = programs[program] || new Set();
    for (const v of words.slice(2)) programs[program].add(v);
  }
  return programs;
}

function checkVariables(docs, describePath) {
  const all = docs.map((d) => d.doc);
  const programs = describedPrograms(describePath);
  for (const [program, vars] of Object.entries(programs)) {
    if (vars.size === 0) continue; // postgres, redis, nginx: not our binaries
    const containers = [];
    for (const doc of all) {
      for (const c of containersOf(doc)) {
        if (isMessenger(c) && (c.args || [])[0] === program) containers.push(c);
      }
    }
    if (containers.length === 0) {
      problem('no container runs ' + program + ' (scripts/cluster starts it)');
      continue;
    }
    for (const c of containers) {
      const seen = visibleEnv(c, all);
      for (const v of vars) {
        if (!seen.has(v) && !NOT_IN_KUBERNETES.has(v)) problem('container ' + c.name + ' (' + program + ') lacks ' + v);
      }
    }
  }
}

// ---- main ------------------------------------------------------------

if (process.argv.length < 3 || process.argv.length > 4) {
  console.error('usage: node deploy/validate-k8s.js deploy/kustomization.yaml [DESCRIBE]');
  process.exit(2);
}
const docs = render(process.argv[2]);
for (const { file, doc } of docs) validateSchema(file, doc);
checkWorkloads(docs);
if (process.argv[3]) checkVariables(docs, process.argv[3]);
console.log(docs.length + ' objects, ' + failures + ' failures');
process.exit(failures ? 1 : 0);
