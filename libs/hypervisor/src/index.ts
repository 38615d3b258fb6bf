export * from './errors';
export * from './process-runner';
export * from './xml';
export * from './libvirt-xml';
export * from './virsh.driver';
export * from './qemu-img.driver';
