/**
 * The ids under which NVIDIA's RIM service (`GET https://rim.attestation.nvidia.com/v1/rim/<id>`) publishes the driver
 * and VBIOS RIMs for a GPU, derived from the fields of its (verified) attestation report as NVIDIA's verifiers do
 * (nvtrust local_gpu_verifier `CcAdminUtils.get_driver_rim_file_id` / `get_vbios_rim_file_id`, nvattest
 * `get_driver_rim_id` / `get_vbios_rim_id`):
 *  - driver, Hopper: `NV_GPU_DRIVER_GH100_<driver version>`, e.g. NV_GPU_DRIVER_GH100_550.90.07;
 *  - driver, Blackwell: `NV_GPU_CC_DRIVER_<CHIP_INFO>_<driver version>` (`GB100` when the report has no CHIP_INFO);
 *  - VBIOS: `NV_GPU_VBIOS_<PROJECT>_<PROJECT_SKU>_<CHIP_SKU>_<VBIOS version without dots>`, each part trimmed of
 *    NULs and spaces and upper-cased, e.g. NV_GPU_VBIOS_1010_0200_882_96009F0001.
 * Only the id is derived here; what the service returns is verified like any RIM (rim.ts).
 */
import { rejected } from '../errors.ts';
import type { GpuAttestationReport } from './spdm.ts';

export interface RimIds {
  readonly driver: string;
  readonly vbios: string;
}

/** The RIM service's id alphabet (and the host shim's route allowlist). */
const ID = /^[A-Za-z0-9_.-]{1,200}$/;
const PART = /^[A-Z0-9]+$/;

const underivable = (msg: string) => rejected('NVIDIA_RIM_ID', `cannot name the GPU's RIMs: ${msg}`);

function part(v: string | undefined, field: string): string {
  const p = (v ?? '').replace(/^[\s\0]+|[\s\0]+$/g, '').toUpperCase();
  if (!PART.test(p)) throw underivable(`opaque field ${field} is ${v === undefined ? 'absent' : `"${v}", not alphanumeric`}`);
  return p;
}

/** Throws NVIDIA_RIM_ID when the report lacks a field the ids are made of, or holds one outside the id alphabet. */
export function rimIdsFor(report: GpuAttestationReport, arch: string): RimIds {
  const op = report.response.opaque;
  const driverVersion = op.driverVersion?.trim();
  if (!driverVersion || !/^[0-9A-Za-z]+(\.[0-9A-Za-z]+)*$/.test(driverVersion)) throw underivable(`driver version ${op.driverVersion ?? '(absent)'}`);
  const a = arch.toUpperCase();
  let prefix: string;
  if (a === 'HOPPER') prefix = 'NV_GPU_DRIVER_GH100_';
  else if (a === 'BLACKWELL') prefix = `NV_GPU_CC_DRIVER_${op.chipInfo === undefined ? 'GB100' : part(op.chipInfo, 'CHIP_INFO')}_`;
  else throw underivable(`no driver RIM naming is known for architecture ${arch}`);
  const vb = op.vbiosVersion;
  if (!vb || !/^[0-9A-Fa-f]{2}(\.[0-9A-Fa-f]{2}){4}$/.test(vb)) throw underivable(`VBIOS version ${vb ?? '(absent)'}`);
  const driver = prefix + driverVersion;
  const vbios = `NV_GPU_VBIOS_${part(op.project, 'PROJECT')}_${part(op.projectSku, 'PROJECT_SKU')}_${part(op.chipSku, 'CHIP_SKU')}_${vb.replace(/\./g, '').toUpperCase()}`;
  for (const id of [driver, vbios]) if (!ID.test(id)) throw underivable(`${id} is not a RIM service id`);
  return { driver, vbios };
}
