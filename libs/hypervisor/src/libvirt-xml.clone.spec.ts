import { cloneDomainXml, parseDomainXml } from './libvirt-xml';

const original = `<domain type='kvm'>
  <name>web-1</name>
  <uuid>0b9a4f8e-1111-2222-3333-444455556666</uuid>
  <memory unit='KiB'>131072</memory>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/images/web-1-a.qcow2' index='2'/>
      <backingStore type='file' index='3'>
        <format type='qcow2'/>
        <source file='/images/base.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <alias name='ua-disk-a'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg/web-1-b'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/web-1-c.qcow2'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/tools.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='default'/>
    </interface>
  </devices>
</domain>`;

describe('cloneDomainXml', () => {
  const clone = cloneDomainXml(original, {
    name: 'web-1-copy',
    uuid: '9f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff',
    disks: { vda: { path: '/images/web-1-copy-vda.qcow2', format: 'qcow2' }, vdb: { path: '/images/web-1-copy-vdb.img', format: 'raw' } },
  });
  const parsed = parseDomainXml(clone);

  it('gives the clone its own name and uuid', () => {
    expect(parsed.name).toBe('web-1-copy');
    expect(parsed.uuid).toBe('9f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff');
  });

  it('puts the kept disks on their new images, without the old backing chain, and drops the others', () => {
    const disks = parsed.disks.filter((d) => d.device === 'disk');
    expect(disks.map((d) => [d.target, d.type, d.sourcePath, d.format, d.backingPath])).toEqual([
      ['vda', 'file', '/images/web-1-copy-vda.qcow2', 'qcow2', null],
      ['vdb', 'file', '/images/web-1-copy-vdb.img', 'raw', null],
    ]);
    expect(clone).not.toContain('/images/web-1-c.qcow2');
    expect(clone).not.toContain('base.qcow2');
  });

  it('keeps what is not a disk image (the cdrom, the network) but lets libvirt choose a new MAC', () => {
    expect(parsed.disks.find((d) => d.device === 'cdrom')?.sourcePath).toBe('/iso/tools.iso');
    expect(clone).toContain("<source network='default'/>");
    expect(clone).not.toContain('52:54:00:aa:bb:cc');
  });

  it('escapes names that are not plain', () => {
    const odd = cloneDomainXml(original, { name: "a&b'<c>", uuid: '9f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff', disks: { vda: { path: "/images/x'y.qcow2", format: 'qcow2' } } });
    expect(parseDomainXml(odd).name).toBe("a&b'<c>");
    expect(parseDomainXml(odd).disks[0].sourcePath).toBe("/images/x'y.qcow2");
  });
});
