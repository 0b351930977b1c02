/** Registers every adapter kind with the registry. */
import './lab/index.js';
import './hyperv/index.js';
import './vsphere/index.js';
import './libvirt/index.js';
