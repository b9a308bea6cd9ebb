// deploy/check-compose.js - does docker-compose.yml describe the same
// cluster as scripts/cluster?
//
//   docker-compose config > resolved.yaml      (anchors and ${...} resolved)
//   scripts/cluster describe > describe.txt
//   node deploy/check-compose.js resolved.yaml describe.txt
//
// `scripts/cluster describe` prints one line per component: NAME PROGRAM
// VAR... . For every line the compose file must have a service NAME that
// runs PROGRAM (our binaries by command, PostgreSQL, Redis and nginx by
// image) with every VAR in its environment, and a health check. Beyond
// names, every URL in a service's environment must point at a service of
// the file, on the port that service listens on, and every ROUTER_NODES
// entry must be a cache service under its CACHE_NAME. So a
// component or variable added to scripts/cluster fails this check until
// the compose file has it too.
//
// Prints one line per problem; exits 1 on any.
'use strict';
const fs = require('fs');
const yaml = require('js-yaml');

// Our binaries: the service's command names the program.
const OUR_PROGRAMS = new Set(['gateway', 'router', 'cache', 'storage']);
// Other programs: the image they come in.
const IMAGE_OF = { postgres: /^postgres:/, 'redis-server': /^redis:/, nginx: /^nginx:/ };
// The port variable of each of our programs (README, Configuration).
const PORT_VAR = { gateway: 'GATEWAY_PORT', router: 'ROUTER_PORT', cache: 'CACHE_PORT', storage: 'STORAGE_PORT' };
// Variables of scripts/cluster with no meaning in compose (none today).
const NOT_IN_COMPOSE = new Set([]);
const DEFAULT_PORTS = { postgres: 5432, 'redis-server': 6379 };

let problems = 0;
function problem(what) {
  problems++;
  console.log('FAIL    ' + what);
}

function envOf(service) {
  const env = service.environment || {};
  if (Array.isArray(env)) {
    const out = {};
    for (const item of env) {
      const i = item.indexOf('=');
      out[i < 0 ? item : item.slice(0, i)] = i < 0 ? '' : item.slice(i + 1);
    }
    return out;
  }
  return env;
}

function commandOf(service) {
  const c = service.command;
  return Array.isArray(c) ? c : typeof c === 'string' ? c.split(/\s+/) : [];
}

function readDescribe(file) {
  return fs.readFileSync(file, 'utf8').split('\n').map((l) => l.trim().split(/\s+/).filter(Boolean))
    .filter((w) => w.length >= 2).map((w) => ({ name: w[0], program: w[1], vars: w.slice(2) }));
}

function checkComponent(services, comp) {
  const s = services[comp.name];
  if (!s) return problem(comp.name + ': no such service in docker-compose.yml');
  if (OUR_PROGRAMS.has(comp.program)) {
    if (commandOf(s)[0] !== comp.program) problem(comp.name + ': runs ' + JSON.stringify(s.command) + ', not ' + comp.program);
  } else if (IMAGE_OF[comp.program]) {
    if (!IMAGE_OF[comp.program].test(s.image || '')) problem(comp.name + ': image ' + s.image + ' does not run ' + comp.program);
  } else {
    problem(comp.name + ': program ' + comp.program + ' is unknown to this check');
  }
  const env = envOf(s);
  for (const v of comp.vars) {
    if (!(v in env) && !NOT_IN_COMPOSE.has(v)) problem(comp.name + ': ' + v + ' is not in its environment');
  }
  if (!s.healthcheck || !s.healthcheck.test) problem(comp.name + ': no health check');
}

// Second listeners: a URL in the variable on the left must use the port
// in the variable on the right (the long-poll listener of a cache node).
const URL_PORT_VAR = { CACHE_EVENTS_URL: 'CACHE_EVENTS_PORT' };

// The port a service listens on inside the compose network, for a URL
// found in variable key.
function listenPort(services, programs, host, key) {
  const program = programs[host];
  const env = envOf(services[host]);
  if (URL_PORT_VAR[key] && env[URL_PORT_VAR[key]]) return Number(env[URL_PORT_VAR[key]]);
  if (PORT_VAR[program]) return Number(env[PORT_VAR[program]]);
  return DEFAULT_PORTS[program];
}

function checkUrls(services, programs) {
  const urlRe = /(?:https?:\/\/|postgresql:\/\/[^@/]*@)([A-Za-z0-9_.-]+):(\d+)/g;
  for (const [name, s] of Object.entries(services)) {
    for (const [key, value] of Object.entries(envOf(s))) {
      for (const m of String(value).matchAll(urlRe)) {
        const host = m[1];
        if (host === '127.0.0.1' || host === 'localhost') continue; // health checks inside one container
        if (!services[host]) {
          problem(name + ': ' + key + ' points at ' + host + ', not a service');
          continue;
        }
        const want = listenPort(services, programs, host, key);
        if (want !== undefined && Number(m[2]) !== want) {
          problem(name + ': ' + key + ' uses port ' + m[2] + ' of ' + host + ', which listens on ' + want);
        }
      }
    }
  }
}

// Every ROUTER_NODES entry is a cache service of the file, under its
// CACHE_NAME and URL (standbys wait outside the first ring).
function checkRing(services, programs) {
  const byCacheName = new Map();
  for (const n of Object.keys(programs)) {
    if (programs[n] === 'cache' && services[n]) byCacheName.set(String(envOf(services[n]).CACHE_NAME), n);
  }
  for (const [name, s] of Object.entries(services)) {
    const nodes = envOf(s).ROUTER_NODES;
    if (nodes === undefined) continue;
    for (const [cacheName, url] of String(nodes).split(',').map((e) => e.split('='))) {
      const service = byCacheName.get(cacheName);
      if (!service) problem(name + ': ROUTER_NODES names ' + cacheName + ', no cache service has that CACHE_NAME');
      else if (!String(url).includes('//' + service + ':')) problem(name + ': ROUTER_NODES sends ' + cacheName + ' to ' + url + ', not to service ' + service);
    }
  }
}

if (process.argv.length !== 4) {
  console.error('usage: node deploy/check-compose.js RESOLVED_COMPOSE.yaml DESCRIBE.txt');
  process.exit(2);
}
const compose = yaml.load(fs.readFileSync(process.argv[2], 'utf8'));
const services = (compose && compose.services) || {};
const components = readDescribe(process.argv[3]);
if (components.length === 0) problem('scripts/cluster describe printed no component');
const programs = {};
for (const c of components) programs[c.name] = c.program;
for (const c of components) checkComponent(services, c);
checkUrls(services, programs);
checkRing(services, programs);
console.log(components.length + ' components of scripts/cluster checked against ' +
  Object.keys(services).length + ' compose services: ' + problems + ' problems');
process.exit(problems ? 1 : 0);
