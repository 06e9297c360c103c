#!/usr/bin/perl
# optscan.t - keeps the option table in daemon/conf.c, the annotated sample
# conf/nvsrelayd.conf and the README's configuration table in step: every key
# with its default and its environment variables in both documents, every
# field of struct conf_values backed by a key, and no documented key that the
# table lacks.
use strict;
use warnings;
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/../..";

sub slurp {
	my ($path) = @_;
	open(my $fh, '<', "$root/$path") or BAIL_OUT("cannot read $path: $!");
	local $/;
	my $text = <$fh>;
	close($fh);
	return $text;
}

my $conf_c = slurp('daemon/conf.c');
my $conf_h = slurp('daemon/conf.h');
my $sample = slurp('conf/nvsrelayd.conf');
my $readme = slurp('README.md');

# The table: OPT(name, T_TYPE, "default", .env = "...", .env_alt = "...", ...),
my ($table) = $conf_c =~ /^static const struct opt opts\[\] = \{\n(.*?)^\};/ms
	or BAIL_OUT('option table not found in daemon/conf.c');
my @opts;
for my $entry (split /^\s*(?=OPT\()/m, $table) {
	next unless $entry =~ /\S/;
	my ($name, $def) = $entry =~ /^OPT\((\w+),\s*T_\w+,\s*"((?:[^"\\]|\\.)*)"/
		or BAIL_OUT("cannot read table entry: $entry");
	my @env = $entry =~ /\.env(?:_alt)?\s*=\s*"(\w+)"/g;
	push @opts, { name => $name, def => $def, env => [ @env, 'NVSRELAYD_' . uc($name) ] };
}
my %known = map { $_->{name} => 1 } @opts;
cmp_ok(scalar(@opts), '>=', 1, 'daemon/conf.c: ' . scalar(@opts) . ' keys in the table');

# Every field of the public view has a key of the same name.
my ($view) = $conf_h =~ /^struct conf_values \{\n(.*?)^\};/ms
	or BAIL_OUT('struct conf_values not found in daemon/conf.h');
my @fields = $view =~ /(\w+);/g;
is_deeply([ sort @fields ], [ sort keys %known ], 'daemon/conf.h: struct conf_values fields = table keys');

# The sample: blank-line separated paragraphs, the key's one holds its
# commented-out default and names its environment variables.
my @paragraphs = split /\n\s*\n/, $sample;
my %readme_row;
while ($readme =~ /^\|\s*`(\w+)`\s*\|\s*`([^`]*)`\s*\|([^|\n]*)\|([^|\n]*)\|\s*$/mg) {
	$readme_row{$1} = { def => $2, env => $3, meaning => $4 };
}

for my $o (@opts) {
	my ($name, $def) = ($o->{name}, $o->{def});
	my $shown = $def eq '' ? '""' : $def;

	my @para = grep { /^#?\Q$name\E = /m } @paragraphs;
	is(scalar(@para), 1, "conf/nvsrelayd.conf: $name appears once");
	like($para[0] // '', qr/^#\Q$name\E = \Q$shown\E$/m, "conf/nvsrelayd.conf: #$name = $shown");
	for my $env (@{ $o->{env} }) {
		like($para[0] // '', qr/\b\Q$env\E\b/, "conf/nvsrelayd.conf: $name names $env");
	}

	my $row = $readme_row{$name};
	ok($row, "README.md: $name has a row");
	is($row->{def} // '', $shown, "README.md: $name default $shown");
	for my $env (@{ $o->{env} }) {
		like($row->{env} // '', qr/`\Q$env\E`/, "README.md: $name names $env");
	}
	like($row->{meaning} // '', qr/\w/, "README.md: $name is explained");
}

# Nothing documented that the table lacks.
for my $line ($sample =~ /^#?([a-z_]+) = /mg) {
	ok($known{$line}, "conf/nvsrelayd.conf: $line is a key");
}
for my $key (sort keys %readme_row) {
	ok($known{$key}, "README.md: $key is a key");
}

done_testing();
