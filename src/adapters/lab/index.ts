import { registerAdapter } from '../registry.js';
import { LabAdapter } from './lab.js';

registerAdapter('lab', (ctx) => new LabAdapter(ctx));
export { LabAdapter };
