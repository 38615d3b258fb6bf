import { XmlParseError } from './errors';
import { buildCheckpointXml, buildPushBackupXml, parseBackupXml, parseCheckpointXml, parseDomainXml } from './libvirt-xml';
import { attribute, childText, parseXml, xmlEscape } from './xml';

describe('parseXml', () => {
  it('reads elements, attributes, text, entities, CDATA, comments and declarations', () => {
    const root = parseXml(`\ufeff<?xml version="1.0"?>
<!-- a comment -->
<a x='1' y="two &amp; &lt;three&gt;" qemu:z='&#65;&#x42;'>
  <b>text &quot;q&quot; &apos;s&apos;</b><![CDATA[<raw & stuff>]]>
  <c/>
</a>`);
    expect(root.name).toBe('a');
    expect(attribute(root, 'x')).toBe('1');
    expect(attribute(root, 'y')).toBe('two & <three>');
    expect(attribute(root, 'qemu:z')).toBe('AB');
    expect(childText(root, 'b')).toBe(`text "q" 's'`);
    expect(root.text).toContain('<raw & stuff>');
    expect(root.children.map((c) => c.name)).toEqual(['b', 'c']);
    expect(attribute(root, 'missing')).toBeNull();
  });

  it('keeps __proto__ and friends as plain attribute names', () => {
    const root = parseXml(`<a __proto__='p' constructor='c'/>`);
    expect(attribute(root, '__proto__')).toBe('p');
    expect(attribute(root, 'constructor')).toBe('c');
    expect(attribute(root, 'toString')).toBeNull();
    expect(({} as Record<string, unknown>).p).toBeUndefined();
  });

  it.each([
    ['a DOCTYPE (no entity expansion, no external entities)', `<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>`],
    ['an unknown entity', '<a>&nbsp;</a>'],
    ['an unterminated entity', '<a>a & b</a>'],
    ['mismatched tags', '<a><b></a></b>'],
    ['unclosed elements', '<a><b>'],
    ['two roots', '<a/><b/>'],
    ['text outside the root', 'x<a/>'],
    ['duplicate attributes', `<a x='1' x='2'/>`],
    ['an unquoted attribute', '<a x=1/>'],
    ['a bad character reference', '<a>&#0;</a>'],
    ['an empty document', '  '],
  ])('refuses %s', (_what, xml) => {
    expect(() => parseXml(xml)).toThrow(XmlParseError);
  });

  it('limits depth and size', () => {
    expect(() => parseXml('<a>'.repeat(300) + '</a>'.repeat(300))).toThrow(/deeper/);
    expect(() => parseXml('<a/>', { maxLength: 3 })).toThrow(/longer/);
  });

  it('escapes what it is given', () => {
    const v = `a&b<c>"d"'e'`;
    expect(attribute(parseXml(`<x v='${xmlEscape(v)}'>${xmlEscape(v)}</x>`), 'v')).toBe(v);
  });
});

describe('libvirt XML', () => {
  const domainXml = `<domain type='kvm' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>i-2-34-VM</name>
  <uuid>9141d01c-ecbd-43c4-a5b2-c9f43967b44f</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu placement='static'>2</vcpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/a&amp;b/vda.qcow2' index='2'/>
      <backingStore type='file' index='3'>
        <format type='qcow2'/>
        <source file='/backups/full.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <alias name='ua-vda'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg/lv'/>
      <target dev='sdb' bus='scsi'/>
      <shareable/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
  </devices>
</domain>`;

  it('parses a domain and its disks', () => {
    const d = parseDomainXml(domainXml);
    expect(d).toMatchObject({ name: 'i-2-34-VM', uuid: '9141d01c-ecbd-43c4-a5b2-c9f43967b44f', type: 'kvm', id: 7, memoryKiB: 131072, vcpus: 2 });
    expect(d.disks).toEqual([
      { target: 'vda', bus: 'virtio', device: 'disk', type: 'file', sourcePath: '/var/lib/a&b/vda.qcow2', format: 'qcow2', readOnly: false, shareable: false, alias: 'ua-vda', sourceIndex: 2, backingPath: '/backups/full.qcow2' },
      { target: 'sdb', bus: 'scsi', device: 'disk', type: 'block', sourcePath: '/dev/vg/lv', format: 'raw', readOnly: false, shareable: true, alias: null, sourceIndex: null, backingPath: null },
      { target: 'hdc', bus: 'ide', device: 'cdrom', type: 'file', sourcePath: null, format: 'raw', readOnly: true, shareable: false, alias: null, sourceIndex: null, backingPath: null },
    ]);
  });

  it('builds checkpoint XML that parses back', () => {
    const xml = buildCheckpointXml({ name: 'backup-1', description: 'chain <c1>', disks: [{ name: 'vda' }, { name: 'vdb', checkpoint: 'no' }] });
    expect(parseCheckpointXml(xml)).toEqual({
      name: 'backup-1',
      description: 'chain <c1>',
      parent: null,
      creationTime: null,
      hasDomain: false,
      disks: [
        { name: 'vda', checkpoint: 'bitmap', bitmap: null, sizeBytes: null },
        { name: 'vdb', checkpoint: 'no', bitmap: null, sizeBytes: null },
      ],
    });
    expect(() => buildCheckpointXml({ name: "x'/><evil" })).toThrow(/unsafe checkpoint name/);
  });

  it('parses a dumped checkpoint with parent and sizes', () => {
    const cp = parseCheckpointXml(`<domaincheckpoint><name>cp2</name><parent><name>cp1</name></parent><creationTime>1795345916</creationTime>
      <disks><disk name='vda' checkpoint='bitmap' bitmap='cp2' size='589824'/></disks><domain type='kvm'><name>x</name></domain></domaincheckpoint>`);
    expect(cp).toEqual({
      name: 'cp2',
      description: null,
      parent: 'cp1',
      creationTime: 1795345916,
      hasDomain: true,
      disks: [{ name: 'vda', checkpoint: 'bitmap', bitmap: 'cp2', sizeBytes: 589824 }],
    });
  });

  it('builds push backup XML (full and incremental)', () => {
    const full = buildPushBackupXml({ disks: [{ name: 'vda', targetFile: "/repo/vm/c'1/b1/vol.qcow2" }], excludedDisks: ['hdc'] });
    expect(parseBackupXml(full)).toEqual({
      mode: 'push',
      incremental: null,
      disks: [
        { name: 'vda', backup: true, type: 'file', targetFile: "/repo/vm/c'1/b1/vol.qcow2", format: 'qcow2' },
        { name: 'hdc', backup: false, type: null, targetFile: null, format: null },
      ],
    });
    const inc = buildPushBackupXml({ incremental: 'cp1', disks: [{ name: 'vda', targetFile: '/r/b2/vol.qcow2' }] });
    expect(parseBackupXml(inc).incremental).toBe('cp1');
    expect(() => buildPushBackupXml({ disks: [{ name: 'vda', targetFile: 'relative.qcow2' }] })).toThrow(/absolute/);
    expect(() => buildPushBackupXml({ disks: [] })).toThrow(/at least one disk/);
  });
});
