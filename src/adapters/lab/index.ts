import type { AdapterFactory } from '../registry.js';
import { LabAdapter } from './lab.js';

export const labAdapterFactory: AdapterFactory = (ctx) => new LabAdapter(ctx);
export { LabAdapter };
