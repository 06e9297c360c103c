// k8s-validate.cjs - validates Kubernetes manifests against the OpenAPI
// schemas bundled in the npm package kubernetes-models, offline.  Used by
// tests/integ/92-k8s.t with the node_modules directory from
// `tests/tools/helm.sh models`.
//
//   node k8s-validate.cjs NODE_MODULES FILE...
//
// Prints one JSON object per document: {"file","doc","kind","name","error"}
// with error null when the document is valid.  Exit status 0 when every
// document is valid, 1 otherwise, 2 on a usage or setup error.
// kubernetes-models reports type errors and missing required fields; it
// does not report unknown (for example misspelt) fields.
'use strict';

const fs = require('fs');
const path = require('path');

const [modules, ...files] = process.argv.slice(2);
if (!modules || files.length === 0) {
	console.error('usage: node k8s-validate.cjs NODE_MODULES FILE...');
	process.exit(2);
}
const load = (name) => require(path.join(modules, name));
let YAML;
try {
	YAML = load('yaml');
	load('kubernetes-models/v1');
} catch (e) {
	console.error(`k8s-validate: cannot load kubernetes-models or yaml from ${modules}: ${e.message}`);
	process.exit(2);
}

let bad = 0;
for (const file of files) {
	// YAML 1.1, as Kubernetes reads manifests: 0440 is an octal mode.
	const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'), { version: '1.1' });
	docs.forEach((d, i) => {
		const obj = d.toJS();
		if (obj === null || obj === undefined) return;
		const out = { file, doc: i, kind: obj.kind || null, name: (obj.metadata || {}).name || null, error: null };
		if (d.errors.length) {
			out.error = d.errors.map((e) => e.message).join('; ');
		} else if (!obj.apiVersion || !obj.kind) {
			out.error = 'apiVersion and kind are required';
		} else {
			try {
				const ns = load(`kubernetes-models/${obj.apiVersion}`);
				if (typeof ns[obj.kind] !== 'function') throw new Error(`unknown kind ${obj.kind} in ${obj.apiVersion}`);
				new ns[obj.kind](obj).validate();
			} catch (e) {
				out.error = e.message.replace(/\s+/g, ' ');
			}
		}
		if (out.error) bad++;
		console.log(JSON.stringify(out));
	});
}
process.exit(bad ? 1 : 0);
