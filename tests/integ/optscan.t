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

# The man pages (packaging/man/*.in, made into pages by manpage.pl): every
# key with its default in nvsrelayd.conf(5), every option and command that
# the binaries' --help shows in nvsrelayd(8) and nvsrelay(1).
sub manpage {
	my ($page) = @_;
	my $text = `perl "$root/packaging/man/manpage.pl" 0 "$root/conf/nvsrelayd.conf" < "$root/packaging/man/$page.in"`;
	BAIL_OUT("manpage.pl failed for $page") if $? || !$text;
	$text =~ s/\\-/-/g;
	return $text;
}
my $conf5 = manpage('nvsrelayd.conf.5');
for my $o (@opts) {
	my $shown = $o->{def} eq '' ? '""' : $o->{def};
	ok($conf5 =~ /^\\fB\Q$o->{name}\E\\fR = \\fI\Q$shown\E\\fR$/m, "nvsrelayd.conf(5): $o->{name} = $shown");
}
my $build = $ENV{NVSRELAY_BUILD} || "$root/build";
for ([ 'nvsrelayd', 'nvsrelayd.8' ], [ 'nvsrelay', 'nvsrelay.1' ]) {
	my ($prog, $page) = @$_;
	SKIP: {
		skip "no executable $build/$prog (build it with make)", 1 unless -x "$build/$prog";
		my $man = manpage($page);
		my $help = `"$build/$prog" --help`;
		my @cmds = $help =~ /^\s*(?:Usage:)?\s*\Q$prog\E ([a-z][a-z-]+)/mg;
		push @cmds, $help =~ /\|\s*([a-z][a-z-]+)/g;
		for my $cmd (@cmds) {
			ok($man =~ /^\.B\w* "?\Q$cmd\E\b/m, "$page: command $cmd");
			my $sub = `"$build/$prog" $cmd --help 2>/dev/null`;
			$help .= $sub unless $?;
		}
		my %seen;
		for my $opt (grep { !$seen{$_}++ } $help =~ /(?<![\w-])(--?[A-Za-z][\w-]*)/g) {
			ok($man =~ /(?<![\w-])\Q$opt\E(?![\w-])/, "$page: $opt");
		}
	}
}

done_testing();
