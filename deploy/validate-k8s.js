// deploy/validate-k8s.js - check rendered Kubernetes manifests against the
// Kubernetes OpenAPI schemas (as shipped by the kubernetes-models package).
//
//   mkdir -p /some/scratch && (cd /some/scratch && npm install kubernetes-models js-yaml)
//   kubectl kustomize deploy > rendered.yaml
//   NODE_PATH=/some/scratch/node_modules node deploy/validate-k8s.js rendered.yaml
//
// Prints one line per object and exits 1 if any object is invalid or of a
// kind the schemas do not know.
'use strict';
const fs = require('fs');
const yaml = require('js-yaml');

// The model of an object: kubernetes-models/<apiVersion> exports one class
// per kind (kubernetes-models/v1, kubernetes-models/apps/v1, ...).
function modelClass(doc) {
  try {
    return require('kubernetes-models/' + doc.apiVersion)[doc.kind];
  } catch (e) {
    return undefined;
  }
}

if (process.argv.length !== 3) {
  console.error('usage: node deploy/validate-k8s.js RENDERED.yaml');
  process.exit(2);
}
const docs = yaml.loadAll(fs.readFileSync(process.argv[2], 'utf8')).filter(Boolean);
let invalid = 0;
for (const doc of docs) {
  const name = doc.kind + ' ' + (doc.metadata && doc.metadata.name);
  const Model = modelClass(doc);
  if (!Model) {
    invalid++;
    console.log('unknown ' + doc.apiVersion + ' ' + name);
    continue;
  }
  try {
    new Model(doc).validate();
    console.log('ok      ' + name);
  } catch (e) {
    invalid++;
    console.log('invalid ' + name + ': ' + e.message);
  }
}
console.log(docs.length + ' objects, ' + invalid + ' invalid');
process.exit(invalid ? 1 : 0);
